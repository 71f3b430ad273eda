//! Who a client certificate names: the organisation from the subject's
//! `organizationIdentifier` (OID 2.5.4.97), in the ETSI EN 319 412-1 form
//! Norwegian enterprise certificates use, `NTRNO-<9-digit orgno>`.
//!
//! Only certificates rustls has already verified (chain to a configured client
//! CA, validity dates, clientAuth purpose) reach this module; it reads, it does
//! not judge trust.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::is_org_no;

/// organizationIdentifier (X.520, 2.5.4.97).
const ORGANIZATION_IDENTIFIER: [u64; 4] = [2, 5, 4, 97];
/// The ETSI prefix of a Norwegian organisation number (NTR: national trade register, NO).
const NTR_NO_PREFIX: &str = "NTRNO-";

/// What a verified client certificate says about the caller; put into each
/// request's extensions by the TLS listener (never read from the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// The certificate names this organisation (nine digits).
    Organisation(String),
    /// The certificate names no usable organisation; a fixed reason.
    NoOrganisation(&'static str),
}

impl PeerIdentity {
    /// Reads the leaf certificate (DER) of a verified chain.
    pub fn from_leaf(der: &[u8]) -> PeerIdentity {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return PeerIdentity::NoOrganisation("the client certificate cannot be parsed");
        };
        let mut values = cert
            .subject()
            .iter_attributes()
            .filter(|a| {
                a.attr_type()
                    .iter()
                    .is_some_and(|arcs| arcs.eq(ORGANIZATION_IDENTIFIER))
            })
            .map(|a| a.as_str());
        let value = match (values.next(), values.next()) {
            (None, _) => {
                return PeerIdentity::NoOrganisation(
                    "the client certificate has no organizationIdentifier",
                );
            }
            // Two organisations in one subject: which one is asking is unclear.
            (Some(_), Some(_)) => {
                return PeerIdentity::NoOrganisation(
                    "the client certificate has more than one organizationIdentifier",
                );
            }
            (Some(Ok(v)), None) => v,
            (Some(Err(_)), None) => {
                return PeerIdentity::NoOrganisation(
                    "the client certificate's organizationIdentifier is not a string",
                );
            }
        };
        match value.strip_prefix(NTR_NO_PREFIX) {
            Some(org) if is_org_no(org) => PeerIdentity::Organisation(org.to_owned()),
            _ => PeerIdentity::NoOrganisation(
                "the client certificate's organizationIdentifier is not NTRNO-<9 digits>",
            ),
        }
    }
}

/// What the logs say about a certificate: its serial number and validity end,
/// never the certificate itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Hex, colon-free; empty when the certificate cannot be parsed.
    pub serial: String,
    /// RFC 3339; empty when the certificate cannot be parsed.
    pub not_after: String,
    /// Unix seconds of `not_after`, if it could be read.
    pub not_after_unix: Option<i64>,
}

impl CertSummary {
    pub fn of(der: &[u8]) -> CertSummary {
        match X509Certificate::from_der(der) {
            Ok((_, cert)) => {
                let not_after = cert.validity().not_after.to_datetime();
                CertSummary {
                    serial: hex::encode(cert.raw_serial()),
                    not_after: not_after
                        .format(&::time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    not_after_unix: Some(not_after.unix_timestamp()),
                }
            }
            Err(_) => CertSummary {
                serial: String::new(),
                not_after: String::new(),
                not_after_unix: None,
            },
        }
    }

    /// Whether the certificate's validity has ended (unknown counts as not).
    pub fn expired(&self) -> bool {
        self.not_after_unix
            .is_some_and(|t| t < ::time::OffsetDateTime::now_utc().unix_timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert_with(org_ids: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Eksempel Bank ASA");
        for id in org_ids {
            params
                .distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 97]), *id);
        }
        params.serial_number = Some(vec![0x0a, 0xbc].into());
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_organisation_comes_from_ntrno() {
        assert_eq!(
            PeerIdentity::from_leaf(&cert_with(&["NTRNO-910000001"])),
            PeerIdentity::Organisation("910000001".into())
        );
    }

    #[test]
    fn anything_else_names_no_organisation() {
        for ids in [
            &[][..],
            &["NTRNO-91000000"],
            &["NTRNO-9100000012"],
            &["NTRNO-91000000x"],
            &["VATNO-910000001"],
            &["910000001"],
            // (rcgen keeps one value per attribute type, so a subject with two
            // organizationIdentifiers cannot be made here.)
        ] {
            assert!(
                matches!(
                    PeerIdentity::from_leaf(&cert_with(ids)),
                    PeerIdentity::NoOrganisation(_)
                ),
                "{ids:?}"
            );
        }
        assert!(matches!(
            PeerIdentity::from_leaf(b"not a certificate"),
            PeerIdentity::NoOrganisation(_)
        ));
    }

    #[test]
    fn the_summary_gives_serial_and_end() {
        let s = CertSummary::of(&cert_with(&[]));
        assert_eq!(s.serial, "0abc");
        assert!(s.not_after.starts_with("4096-01-01"), "{}", s.not_after);
        assert!(!s.expired());
        assert_eq!(CertSummary::of(b"junk").serial, "");
    }
}
