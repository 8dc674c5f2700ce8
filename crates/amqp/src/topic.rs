//! Topic exchange matching: binding keys are dot-separated words where `*` matches exactly
//! one word and `#` matches zero or more words (AMQP 0-9-1 section 3.1.3.3, RabbitMQ).

/// Whether `routing_key` matches the topic `pattern`.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    // An empty key or pattern has no words (as RabbitMQ splits them).
    let words = |s: &'_ str| -> Vec<String> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split('.').map(str::to_string).collect()
        }
    };
    let p = words(pattern);
    let k = words(routing_key);
    // Iterative DP over (pattern index, key index); bounded by 255-byte short strings.
    let mut reach = vec![false; k.len() + 1];
    reach[0] = true;
    for word in &p {
        let mut next = vec![false; k.len() + 1];
        for i in 0..=k.len() {
            if !reach[i] {
                continue;
            }
            match word.as_str() {
                "#" => {
                    for n in next.iter_mut().skip(i) {
                        *n = true;
                    }
                }
                "*" => {
                    if i < k.len() {
                        next[i + 1] = true;
                    }
                }
                w => {
                    if i < k.len() && k[i] == w {
                        next[i + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[k.len()]
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn star_and_hash() {
        assert!(topic_matches("a.b.c", "a.b.c"));
        assert!(!topic_matches("a.b.c", "a.b"));
        assert!(topic_matches("a.*.c", "a.x.c"));
        assert!(!topic_matches("a.*.c", "a.c"));
        assert!(!topic_matches("a.*.c", "a.x.y.c"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#", "a.b.c"));
        assert!(topic_matches("#", ""));
        assert!(topic_matches("#", "x.y"));
        assert!(topic_matches("#.c", "c"));
        assert!(topic_matches("#.c", "a.b.c"));
        assert!(!topic_matches("#.c", "a.b.d"));
        assert!(topic_matches("a.#.c", "a.c"));
        assert!(topic_matches("a.#.c", "a.x.y.c"));
        assert!(topic_matches("*.orange.*", "quick.orange.rabbit"));
        assert!(!topic_matches("*.orange.*", "quick.orange.male.rabbit"));
        assert!(topic_matches("lazy.#", "lazy.orange.male.rabbit"));
        assert!(topic_matches("*.*.rabbit", "quick.orange.rabbit"));
        assert!(!topic_matches("*", ""));
        assert!(topic_matches("", ""));
        assert!(topic_matches("#.#", "a"));
    }
}
