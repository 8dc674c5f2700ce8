//! Publisher confirms of one channel (sans-IO): sequence numbers in publish order,
//! outcomes that arrive in any order (stores complete out of order), and the acks and
//! nacks to send, in order, runs of acks coalesced into one `multiple` ack.

use std::collections::BTreeMap;

/// A confirm to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// basic.ack of `tag`, and with `multiple` of every earlier one too.
    Ack { tag: u64, multiple: bool },
    /// basic.nack of one publish (requeue=false).
    Nack { tag: u64 },
}

#[derive(Debug, Default)]
pub struct Confirms {
    enabled: bool,
    next_seq: u64,
    /// Outcome per publish sequence number: None while being stored.
    outcomes: BTreeMap<u64, Option<bool>>,
}

impl Confirms {
    /// confirm.select.
    pub fn enable(&mut self) {
        self.enabled = true;
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Publishes not confirmed yet.
    pub fn pending(&self) -> usize {
        self.outcomes.len()
    }

    /// The sequence number of a publish, or `None` outside confirm mode.
    pub fn register(&mut self) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        self.next_seq += 1;
        self.outcomes.insert(self.next_seq, None);
        Some(self.next_seq)
    }

    /// A publish's outcome: stored (`ok`) or not. Unknown numbers are ignored.
    pub fn decide(&mut self, seq: u64, ok: bool) {
        if let Some(slot) = self.outcomes.get_mut(&seq) {
            *slot = Some(ok);
        }
    }

    /// Every publish up to this sequence number has been handed out by `drain`.
    pub fn confirmed_through(&self) -> u64 {
        self.outcomes
            .keys()
            .next()
            .map_or(self.next_seq, |first| first - 1)
    }

    /// Hands out the confirms decided in publish order, up to the first undecided one:
    /// consecutive acks as one (`multiple` when it covers more than one), nacks singly.
    /// Returns how many publishes were acked.
    pub fn drain(&mut self, mut send: impl FnMut(Confirm)) -> u64 {
        let mut acked = 0u64;
        let mut run: Option<(u64, usize)> = None;
        while let Some((&seq, &Some(ok))) = self.outcomes.iter().next() {
            self.outcomes.remove(&seq);
            if ok {
                run = Some((seq, run.map_or(1, |r| r.1 + 1)));
            } else {
                if let Some((last, n)) = run.take() {
                    acked += n as u64;
                    send(Confirm::Ack {
                        tag: last,
                        multiple: n > 1,
                    });
                }
                send(Confirm::Nack { tag: seq });
            }
        }
        if let Some((last, n)) = run {
            acked += n as u64;
            send(Confirm::Ack {
                tag: last,
                multiple: n > 1,
            });
        }
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut Confirms) -> Vec<Confirm> {
        let mut out = Vec::new();
        c.drain(|x| out.push(x));
        out
    }

    #[test]
    fn confirmed_through_is_the_last_sequence_handed_out() {
        let mut c = Confirms::default();
        c.enable();
        assert_eq!(c.confirmed_through(), 0);
        let (a, b, d) = (
            c.register().unwrap(),
            c.register().unwrap(),
            c.register().unwrap(),
        );
        c.decide(a, true);
        c.decide(d, true);
        assert_eq!(c.confirmed_through(), 0, "nothing drained yet");
        drain(&mut c);
        assert_eq!(c.confirmed_through(), a, "b is undecided");
        c.decide(b, false);
        drain(&mut c);
        assert_eq!(c.confirmed_through(), d);
    }

    #[test]
    fn no_numbers_outside_confirm_mode() {
        let mut c = Confirms::default();
        assert_eq!(c.register(), None);
        c.enable();
        assert!(c.enabled());
        assert_eq!(c.register(), Some(1));
        assert_eq!(c.register(), Some(2));
    }

    #[test]
    fn a_single_ack_is_not_multiple() {
        let mut c = Confirms::default();
        c.enable();
        let s = c.register().unwrap();
        assert!(drain(&mut c).is_empty(), "undecided");
        c.decide(s, true);
        assert_eq!(
            drain(&mut c),
            vec![Confirm::Ack {
                tag: 1,
                multiple: false
            }]
        );
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn out_of_order_outcomes_wait_for_earlier_ones_then_coalesce() {
        let mut c = Confirms::default();
        c.enable();
        for _ in 0..4 {
            c.register();
        }
        c.decide(3, true);
        c.decide(2, true);
        assert!(drain(&mut c).is_empty(), "1 is undecided");
        c.decide(1, true);
        assert_eq!(
            drain(&mut c),
            vec![Confirm::Ack {
                tag: 3,
                multiple: true
            }]
        );
        c.decide(4, true);
        assert_eq!(
            drain(&mut c),
            vec![Confirm::Ack {
                tag: 4,
                multiple: false
            }]
        );
    }

    #[test]
    fn a_nack_splits_the_ack_runs() {
        let mut c = Confirms::default();
        c.enable();
        for _ in 0..5 {
            c.register();
        }
        for (seq, ok) in [(5, true), (4, true), (3, false), (2, true), (1, true)] {
            c.decide(seq, ok);
        }
        assert_eq!(
            drain(&mut c),
            vec![
                Confirm::Ack {
                    tag: 2,
                    multiple: true
                },
                Confirm::Nack { tag: 3 },
                Confirm::Ack {
                    tag: 5,
                    multiple: true
                },
            ]
        );
    }

    #[test]
    fn unknown_and_repeated_outcomes_are_ignored() {
        let mut c = Confirms::default();
        c.enable();
        c.decide(7, true);
        assert!(drain(&mut c).is_empty());
        let s = c.register().unwrap();
        c.decide(s, false);
        assert_eq!(drain(&mut c), vec![Confirm::Nack { tag: 1 }]);
        c.decide(s, true);
        assert!(drain(&mut c).is_empty());
    }
}
