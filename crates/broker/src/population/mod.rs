//! The population register (Folkeregisteret) as the copy-letter job sees it: a
//! national id in, a name and postal address out. Behind a trait so the real
//! register's adapter can replace the synthetic one the demo and tests use.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::config::{PopulationRegisterConfig, PopulationRegisterKind};
use crate::nin::NationalId;

/// Why the register could not answer. Texts never hold a national id.
#[derive(Debug, thiserror::Error)]
pub enum PopulationError {
    #[error("the population register is unavailable: {0}")]
    Unavailable(String),
    #[error("no population register is configured ([population_register] kind = ...)")]
    NotConfigured,
}

/// A person's name and postal address as letters print them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resident {
    /// Given names and family name, as the register has them.
    pub name: String,
    /// Street address lines (street and number, c/o, ...).
    pub address_lines: Vec<String>,
    pub postcode: String,
    /// The postal town, upper case as Posten prints it.
    pub town: String,
}

/// A population register adapter.
pub trait PopulationRegister: Send + Sync {
    /// The person's name and address; `None` when the register has no postal
    /// address for them (not found, emigrated, or protected).
    fn resident(&self, nin: NationalId)
    -> BoxFuture<'_, Result<Option<Resident>, PopulationError>>;
}

/// Builds the configured adapter.
pub fn from_config(
    config: Option<&PopulationRegisterConfig>,
) -> Result<Arc<dyn PopulationRegister>, PopulationError> {
    match config.map(|c| c.kind) {
        Some(PopulationRegisterKind::Synthetic) => Ok(Arc::new(SyntheticRegister)),
        None => Err(PopulationError::NotConfigured),
    }
}

/// Made-up, Norwegian-looking names and addresses, the same for the same id
/// every time (demo and tests; the config allows it only with synthetic ids).
#[derive(Debug, Clone, Copy, Default)]
pub struct SyntheticRegister;

const GIVEN_FEMALE: [&str; 16] = [
    "Kari", "Ingrid", "Åse", "Sølvi", "Marit", "Siv", "Bjørg", "Tone", "Liv", "Hege", "Solveig",
    "Mette", "Ragnhild", "Aud", "Gørild", "Nora",
];
const GIVEN_MALE: [&str; 16] = [
    "Ola", "Øystein", "Bjørn", "Håkon", "Jørgen", "Knut", "Arne", "Pål", "Tor", "Sverre", "Ståle",
    "Geir", "Åsmund", "Even", "Nils", "Odd",
];
const FAMILY: [&str; 24] = [
    "Nordmann",
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Sørensen",
    "Jørgensen",
    "Strøm",
    "Bjørnstad",
    "Sæther",
    "Ødegård",
    "Aasen",
    "Økland",
    "Haugen",
    "Berg",
    "Dahl",
    "Lund",
    "Solberg",
    "Brå",
    "Kvåle",
    "Løvås",
    "Næss",
    "Røed",
    "Vågen",
];
const STREETS: [&str; 16] = [
    "Storgata",
    "Kirkeveien",
    "Skogveien",
    "Fjellveien",
    "Bjørkeveien",
    "Solbakken",
    "Åsveien",
    "Granåsen",
    "Øvre Slottsgate",
    "Kongens gate",
    "Fjordgata",
    "Møllevegen",
    "Ringvegen",
    "Sjøgata",
    "Lærkeveien",
    "Tyttebærstien",
];
const TOWNS: [(&str, &str); 14] = [
    ("0150", "OSLO"),
    ("0557", "OSLO"),
    ("5003", "BERGEN"),
    ("7010", "TRONDHEIM"),
    ("4006", "STAVANGER"),
    ("9008", "TROMSØ"),
    ("8006", "BODØ"),
    ("1501", "MOSS"),
    ("2317", "HAMAR"),
    ("6002", "ÅLESUND"),
    ("3015", "DRAMMEN"),
    ("4612", "KRISTIANSAND S"),
    ("9600", "HAMMERFEST"),
    ("2609", "LILLEHAMMER"),
];

impl SyntheticRegister {
    /// The synthetic resident for an id (also what tests expect).
    pub fn resident_for(nin: NationalId) -> Resident {
        let digest = Sha256::digest(nin.as_u64().to_be_bytes());
        let pick = |i: usize, n: usize| usize::from(digest[i]) % n;
        // The ninth digit (the last of the individual number) is odd for men.
        let male = (nin.as_u64() / 100) % 2 == 1;
        let given = if male {
            GIVEN_MALE[pick(0, GIVEN_MALE.len())]
        } else {
            GIVEN_FEMALE[pick(0, GIVEN_FEMALE.len())]
        };
        let family = FAMILY[pick(1, FAMILY.len())];
        let street = STREETS[pick(2, STREETS.len())];
        let number = 1 + pick(3, 120);
        let (postcode, town) = TOWNS[pick(4, TOWNS.len())];
        let mut street_line = format!("{street} {number}");
        if digest[5] % 4 == 0 {
            street_line.push_str(" B");
        }
        Resident {
            name: format!("{given} {family}"),
            address_lines: vec![street_line],
            postcode: postcode.to_owned(),
            town: town.to_owned(),
        }
    }
}

impl PopulationRegister for SyntheticRegister {
    fn resident(
        &self,
        nin: NationalId,
    ) -> BoxFuture<'_, Result<Option<Resident>, PopulationError>> {
        async move { Ok(Some(Self::resident_for(nin))) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nin::IdPolicy;

    #[test]
    fn synthetic_residents_are_stable_and_differ() {
        let ids: Vec<NationalId> = (0..200)
            .filter_map(|i| crate::nin::make_id(1 + i % 28, 5, 91, i, false, true))
            .filter_map(|s| NationalId::parse(&s, IdPolicy::SYNTHETIC_OK).ok())
            .collect();
        assert!(ids.len() > 50);
        let names: std::collections::HashSet<String> = ids
            .iter()
            .map(|id| SyntheticRegister::resident_for(*id).name)
            .collect();
        assert!(names.len() > 20, "varied names");
        for id in &ids {
            let r = SyntheticRegister::resident_for(*id);
            assert_eq!(r, SyntheticRegister::resident_for(*id));
            assert!(r.postcode.len() == 4 && !r.town.is_empty() && r.name.contains(' '));
        }
    }
}
