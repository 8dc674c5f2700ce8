//! The identity in a verified client certificate: the subject DN as RFC 2253 text (the
//! form of Java's `X500Principal.getName()`, which Kafka's default principal mapping and
//! RabbitMQ's `ssl_cert_login_from = distinguished_name` use) and the common name.

use arctern_security::TlsPeer;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// The peer identity from the end-entity certificate's DER (`None` if it does not parse;
/// rustls verified it already, so that would be a certificate webpki accepts and we don't).
pub fn peer_from_der(der: &[u8]) -> Option<TlsPeer> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let client_cn = subject
        .iter_common_name()
        .last()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    Some(TlsPeer {
        client_cn,
        client_subject: Some(rfc2253_subject(subject)),
    })
}

/// RFC 2253: RDNs last to first, joined by `,`; multi-valued RDNs joined by `+`; the
/// keywords CN, L, ST, O, OU, C, STREET, DC, UID, other types as a dotted OID with the
/// value's DER in hex.
pub fn rfc2253_subject(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    match (keyword(&oid), attr.as_str()) {
                        (Some(k), Ok(v)) => format!("{k}={}", escape(v)),
                        (_, _) => {
                            let value = attr.attr_value();
                            let mut der = vec![value.tag().0 as u8];
                            let data = value.data;
                            push_length(&mut der, data.len());
                            der.extend_from_slice(data);
                            let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                            match keyword(&oid) {
                                Some(k) => format!("{k}=#{hex}"),
                                None => format!("{oid}=#{hex}"),
                            }
                        }
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("#1"), "\\#1");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn subject_is_rfc2253_most_specific_first() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Test, Inc");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let peer = peer_from_der(cert.der()).expect("parses");
        assert_eq!(peer.client_cn.as_deref(), Some("alice"));
        assert_eq!(
            peer.client_subject.as_deref(),
            Some("CN=alice,O=Test\\, Inc,C=DE")
        );
    }
}
