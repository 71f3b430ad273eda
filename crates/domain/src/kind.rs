//! Kinds of debt. The register's unsecured consumer debt (API-DEBT-FI) is one
//! kind; the other sources (student loans, debt-collection cases) are not
//! unsecured debt under the law and may be shown only to the person and under a
//! presentation consent that names them. A lender serves exactly one kind, fixed
//! by its adapter, and every loan carries its kind in its `type`.

/// One kind of debt, as a lender serves it and a consent may name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DebtKind {
    /// Unsecured consumer debt under gjeldsinformasjonsloven (API-DEBT-FI).
    Unsecured,
    /// Student loans (a Lånekassen-style saldo API).
    StudentLoan,
    /// Cases at a debt-collection agency.
    DebtCollection,
}

impl DebtKind {
    pub const ALL: [DebtKind; 3] = [
        DebtKind::Unsecured,
        DebtKind::StudentLoan,
        DebtKind::DebtCollection,
    ];

    /// A stable name for docs, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DebtKind::Unsecured => "unsecured",
            DebtKind::StudentLoan => "student_loans",
            DebtKind::DebtCollection => "debt_collection",
        }
    }

    fn bit(self) -> u8 {
        match self {
            DebtKind::Unsecured => 1,
            DebtKind::StudentLoan => 2,
            DebtKind::DebtCollection => 4,
        }
    }
}

/// A set of kinds: which lenders a lookup may call and which loans an answer
/// may hold. Small and `Copy`, so it travels by value through the lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KindSet(u8);

impl KindSet {
    /// Nothing at all.
    pub const NONE: KindSet = KindSet(0);
    /// The register's debt only: what searches and plain consents see.
    pub const UNSECURED: KindSet = KindSet(1);
    /// Every kind: the person's own view.
    pub const ALL: KindSet = KindSet(1 | 2 | 4);

    pub fn contains(self, kind: DebtKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The set with `kind` added.
    #[must_use]
    pub fn with(self, kind: DebtKind) -> KindSet {
        KindSet(self.0 | kind.bit())
    }

    /// The kinds in both sets.
    #[must_use]
    pub fn intersect(self, other: KindSet) -> KindSet {
        KindSet(self.0 & other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = DebtKind> {
        DebtKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl FromIterator<DebtKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = DebtKind>>(iter: I) -> Self {
        iter.into_iter().fold(KindSet::NONE, KindSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        assert!(KindSet::UNSECURED.contains(DebtKind::Unsecured));
        assert!(!KindSet::UNSECURED.contains(DebtKind::StudentLoan));
        let s = KindSet::UNSECURED.with(DebtKind::StudentLoan);
        assert!(s.contains(DebtKind::StudentLoan));
        assert!(!s.contains(DebtKind::DebtCollection));
        assert_eq!(s.intersect(KindSet::UNSECURED), KindSet::UNSECURED);
        assert_eq!(DebtKind::ALL.into_iter().collect::<KindSet>(), KindSet::ALL);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![DebtKind::Unsecured, DebtKind::StudentLoan]
        );
    }
}
