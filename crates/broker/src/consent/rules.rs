//! The consent rules, as pure functions of the consent and a given `now` (so
//! tests control the clock): which purposes exist, who may hold them, how long a
//! consent lasts, and whether it may be used.

use gjeldsbro_adapter::{DebtKind, KindSet};
use time::{Duration, OffsetDateTime};

use crate::config::Role;
use crate::redact::Purpose;
use crate::store::StoredConsent;

/// `consent_duration_days: 0`: one use within this window.
pub const ONE_TIME_WINDOW: Duration = Duration::minutes(10);

/// The consent purposes (`scope_of_consent`), each also the OAuth scope a client
/// needs to use such a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `debt.unsecured.presentation`: show the person their debt (partners).
    Presentation,
    /// `debt.unsecured.processing`: credit processing (partners, financial institutions).
    Processing,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::Presentation, Scope::Processing];

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        self.purpose().as_str()
    }

    pub fn purpose(self) -> Purpose {
        match self {
            Scope::Presentation => Purpose::Presentation,
            Scope::Processing => Purpose::Processing,
        }
    }

    /// The longest consent the purpose allows, in days.
    pub fn max_days(self) -> u32 {
        match self {
            Scope::Presentation => 365,
            Scope::Processing => 28,
        }
    }

    /// The roles that may create and use consents for the purpose.
    pub fn roles(self) -> &'static [Role] {
        match self {
            Scope::Presentation => &[Role::Partner],
            Scope::Processing => &[Role::Partner, Role::FinancialInstitution],
        }
    }
}

/// The token in `scope_of_consent` that names a kind of debt beyond the
/// register's (which every consent covers).
pub fn kind_token(kind: DebtKind) -> Option<&'static str> {
    match kind {
        DebtKind::Unsecured => None,
        DebtKind::StudentLoan => Some("debt.student_loans"),
        DebtKind::DebtCollection => Some("debt.debt_collection"),
    }
}

/// A consent's whole `scope_of_consent`: the purpose, then (space-separated,
/// OAuth style) the other kinds of debt it names, e.g.
/// `"debt.unsecured.presentation debt.student_loans"`. Only a presentation
/// consent may name other kinds: student loans and collection cases are not
/// unsecured debt, and credit processing has no business with them here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentScope {
    pub purpose: Scope,
    /// The other kinds named (never `Unsecured`, which is implied).
    pub kinds: KindSet,
}

/// Why a `scope_of_consent` is refused. Texts quote only our own tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "scope_of_consent must start with debt.unsecured.presentation or debt.unsecured.processing"
    )]
    UnknownPurpose,
    #[error(
        "scope_of_consent may name only debt.student_loans and debt.debt_collection after the purpose, each once"
    )]
    UnknownKind,
    #[error("only a debt.unsecured.presentation consent may name other kinds of debt")]
    KindsNeedPresentation,
}

impl ConsentScope {
    /// A consent for the purpose alone.
    pub fn plain(purpose: Scope) -> Self {
        ConsentScope {
            purpose,
            kinds: KindSet::NONE,
        }
    }

    pub fn parse(s: &str) -> Result<ConsentScope, ScopeError> {
        let mut tokens = s.split(' ');
        let purpose = tokens
            .next()
            .and_then(Scope::parse)
            .ok_or(ScopeError::UnknownPurpose)?;
        let mut kinds = KindSet::NONE;
        for t in tokens {
            let kind = DebtKind::ALL
                .into_iter()
                .find(|k| kind_token(*k) == Some(t))
                .ok_or(ScopeError::UnknownKind)?;
            if kinds.contains(kind) {
                return Err(ScopeError::UnknownKind);
            }
            kinds = kinds.with(kind);
        }
        if kinds != KindSet::NONE && purpose != Scope::Presentation {
            return Err(ScopeError::KindsNeedPresentation);
        }
        Ok(ConsentScope { purpose, kinds })
    }

    /// The scope as stored and shown, kinds in a fixed order (so a repeated
    /// request with the kinds in another order is the same consent).
    pub fn to_scope_string(self) -> String {
        let mut out = self.purpose.as_str().to_owned();
        for token in self.kinds.iter().filter_map(kind_token) {
            out.push(' ');
            out.push_str(token);
        }
        out
    }

    /// The kinds of debt a lookup under this consent asks for and shows.
    pub fn lookup_kinds(self) -> KindSet {
        let mut kinds = KindSet::UNSECURED;
        for k in self.kinds.iter() {
            kinds = kinds.with(k);
        }
        kinds.intersect(self.purpose.purpose().allowed_kinds())
    }
}

/// How long a new consent lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub ends_at: OffsetDateTime,
    pub one_time: bool,
    /// The days granted after the cut to the purpose's maximum (0: one-time).
    pub days: u32,
}

/// `requested_days` 0 is the default: one use within ten minutes. Anything above
/// the purpose's maximum is cut to the maximum.
pub fn term(scope: Scope, requested_days: u32, now: OffsetDateTime) -> Term {
    if requested_days == 0 {
        return Term {
            ends_at: now + ONE_TIME_WINDOW,
            one_time: true,
            days: 0,
        };
    }
    let days = requested_days.min(scope.max_days());
    Term {
        ends_at: now + Duration::days(i64::from(days)),
        one_time: false,
        days,
    }
}

/// Where a consent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    /// Withdrawn by the person or deleted by the client.
    Withdrawn,
    /// A one-time consent that has been used.
    Spent,
    Expired,
}

impl State {
    /// Why a use is refused, for the owning client's error text.
    pub fn refusal(self) -> &'static str {
        match self {
            State::Active => "the consent is active",
            State::Withdrawn => "the consent has been withdrawn",
            State::Spent => "the consent was for one use and has been used",
            State::Expired => "the consent has expired",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Withdrawn => "withdrawn",
            State::Spent => "spent",
            State::Expired => "expired",
        }
    }
}

/// The consent's state at `now`. A stored time that does not parse counts as
/// ended: an unreadable consent discloses nothing.
pub fn state(c: &StoredConsent, now: OffsetDateTime) -> State {
    if c.archived_at.is_some() {
        return State::Withdrawn;
    }
    if c.spent_at.is_some() {
        return State::Spent;
    }
    match crate::time::parse_rfc3339(&c.ends_at) {
        Some(end) if end > now => State::Active,
        _ => State::Expired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nin::{IdPolicy, NationalId, make_id};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);

    #[test]
    fn durations_are_cut_to_the_purpose_maximum() {
        let p = term(Scope::Presentation, 1000, NOW);
        assert_eq!((p.days, p.one_time), (365, false));
        assert_eq!(p.ends_at, NOW + Duration::days(365));
        let q = term(Scope::Processing, 365, NOW);
        assert_eq!((q.days, q.one_time), (28, false));
        assert_eq!(q.ends_at, NOW + Duration::days(28));
        assert_eq!(term(Scope::Processing, 7, NOW).days, 7);
        assert_eq!(term(Scope::Presentation, 365, NOW).days, 365);
    }

    #[test]
    fn zero_days_is_one_use_within_ten_minutes() {
        for scope in Scope::ALL {
            let t = term(scope, 0, NOW);
            assert!(t.one_time);
            assert_eq!(t.ends_at, NOW + Duration::minutes(10));
        }
    }

    fn consent(ends_at: OffsetDateTime) -> StoredConsent {
        let id = make_id(1, 1, 70, 123, false, false).unwrap();
        StoredConsent {
            id: "c".into(),
            client_org: "910000003".into(),
            client_consent_id: "x".into(),
            nin: NationalId::parse(&id, IdPolicy::STRICT).unwrap(),
            scope: Scope::Presentation.as_str().into(),
            requested_days: 0,
            one_time: true,
            given_via: "partner".into(),
            created_at: crate::time::format_fixed(NOW),
            ends_at: crate::time::format_fixed(ends_at),
            spent_at: None,
            last_used_at: None,
            archived_at: None,
            archived_by: None,
        }
    }

    #[test]
    fn state_follows_withdrawal_use_and_time() {
        let c = consent(NOW + ONE_TIME_WINDOW);
        assert_eq!(state(&c, NOW), State::Active);
        assert_eq!(state(&c, NOW + Duration::minutes(9)), State::Active);
        assert_eq!(state(&c, NOW + Duration::minutes(10)), State::Expired);
        assert_eq!(state(&c, NOW + Duration::minutes(11)), State::Expired);
        let mut spent = c.clone();
        spent.spent_at = Some(c.created_at.clone());
        assert_eq!(state(&spent, NOW), State::Spent);
        let mut gone = spent.clone();
        gone.archived_at = Some(c.created_at.clone());
        assert_eq!(state(&gone, NOW), State::Withdrawn);
        let mut garbled = c;
        garbled.ends_at = "not a time".into();
        assert_eq!(state(&garbled, NOW), State::Expired);
    }

    #[test]
    fn scopes_name_other_kinds_only_for_presentation() {
        let plain = ConsentScope::parse("debt.unsecured.presentation").unwrap();
        assert_eq!(plain, ConsentScope::plain(Scope::Presentation));
        assert_eq!(plain.lookup_kinds(), KindSet::UNSECURED);
        let both = ConsentScope::parse(
            "debt.unsecured.presentation debt.debt_collection debt.student_loans",
        )
        .unwrap();
        assert_eq!(both.lookup_kinds(), KindSet::ALL);
        assert_eq!(
            both.to_scope_string(),
            "debt.unsecured.presentation debt.student_loans debt.debt_collection"
        );
        let student =
            ConsentScope::parse("debt.unsecured.presentation debt.student_loans").unwrap();
        assert!(student.lookup_kinds().contains(DebtKind::StudentLoan));
        assert!(!student.lookup_kinds().contains(DebtKind::DebtCollection));
        assert_eq!(
            ConsentScope::parse("debt.unsecured.processing debt.student_loans"),
            Err(ScopeError::KindsNeedPresentation)
        );
        for bad in [
            "",
            "debt.student_loans",
            "debt.unsecured.presentation debt.mortgages",
            "debt.unsecured.presentation  debt.student_loans",
            "debt.unsecured.presentation debt.student_loans debt.student_loans",
            "debt.unsecured.presentation debt.unsecured.presentation",
        ] {
            assert!(ConsentScope::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn purposes_and_roles() {
        assert_eq!(
            Scope::parse("debt.unsecured.presentation"),
            Some(Scope::Presentation)
        );
        assert_eq!(
            Scope::parse("debt.unsecured.processing"),
            Some(Scope::Processing)
        );
        assert_eq!(Scope::parse("search"), None);
        assert_eq!(Scope::Presentation.roles(), &[Role::Partner]);
        assert!(
            Scope::Processing
                .roles()
                .contains(&Role::FinancialInstitution)
        );
    }
}
