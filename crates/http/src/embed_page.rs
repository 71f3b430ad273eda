//! The embedded page's HTML (maud: compiled templates, escaped by default).
//! Norwegian bokmål, `lang="nb"`; one `h1`, an `h2` per loan type, tables with a
//! caption and `th scope`, totals per type, and forms with plain buttons, so it
//! works with a keyboard and a screen reader and without any script.

use gjeldsbro_adapter::{Loan, LoanType};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::model::DebtInformation;

/// A consent of this person for this partner that is in force, whatever its
/// scope.
#[derive(Debug, Clone)]
pub struct ActiveConsent {
    pub id: String,
    /// What it allows, in words ([`scope_text`]).
    pub scope_text: String,
    /// Whether it is a presentation consent (the kind the page's button gives).
    pub presentation: bool,
    pub ends_at: String,
    pub one_time: bool,
    /// When the partner fetched the person's debt under it (RFC 3339), oldest
    /// first.
    pub uses: Vec<String>,
}

/// A consent's scope in words: its purpose and the kinds of debt it covers.
/// An unreadable scope is shown as stored.
pub fn scope_text(scope: &str) -> String {
    use crate::consent::{ConsentScope, Scope};
    use gjeldsbro_adapter::DebtKind;
    let Ok(s) = ConsentScope::parse(scope) else {
        return scope.to_owned();
    };
    let mut kinds = vec!["din usikrede gjeld"];
    for k in s.kinds.iter() {
        match k {
            DebtKind::StudentLoan => kinds.push("studielån"),
            DebtKind::DebtCollection => kinds.push("inkassosaker"),
            DebtKind::Unsecured => {}
        }
    }
    let what = match kinds.as_slice() {
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} og {last}", init.join(", ")),
        [] => String::new(),
    };
    match s.purpose {
        Scope::Presentation => format!("Visning av {what} i tjenestene deres"),
        Scope::Processing => format!("Opplysninger om {what} til kredittvurdering"),
    }
}

/// `2027-11-24T09:05:00Z` → `24.11.2027 kl. 10.05` (Oslo time).
pub fn date_time(rfc3339: &str) -> String {
    let Ok(ts) = rfc3339.parse::<jiff::Timestamp>() else {
        return rfc3339.to_owned();
    };
    let tz = jiff::tz::TimeZone::get("Europe/Oslo").unwrap_or(jiff::tz::TimeZone::UTC);
    let t = ts.to_zoned_datetime(tz);
    format!(
        "{:02}.{:02}.{} kl. {:02}.{:02}",
        t.day(),
        t.month(),
        t.year(),
        t.hour(),
        t.minute()
    )
}

/// How often the consent was used, in words.
fn uses_text(uses: &[String]) -> String {
    match uses {
        [] => "Ikke brukt ennå.".to_owned(),
        [one] => format!("Brukt 1 gang: {}.", date_time(one)),
        many => {
            // The newest few; the person sees every use in their own view.
            let shown: Vec<String> = many.iter().rev().take(5).map(|u| date_time(u)).collect();
            let more = many.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(" og {more} til")
            } else {
                String::new()
            };
            format!(
                "Brukt {} ganger, sist {}{tail}.",
                many.len(),
                shown.join(", ")
            )
        }
    }
}

/// What the previous form post did, shown once after its redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Given,
    Withdrawn,
}

/// Everything the page shows.
pub struct Page<'a> {
    pub partner_name: &'a str,
    pub partner_org: &'a str,
    pub reference: Option<&'a str>,
    pub debt: &'a DebtInformation,
    pub active: &'a [ActiveConsent],
    pub csrf: &'a str,
    pub nonce: &'a str,
    pub notice: Option<Notice>,
    /// Days a consent given here lasts.
    pub consent_days: u32,
}

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;padding:1rem;color:#1b1b1b;background:#fff;line-height:1.45}\
h1{font-size:1.5rem;margin:0 0 .5rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}\
table{border-collapse:collapse;width:100%}caption{text-align:left;font-weight:600;padding:.25rem 0}\
th,td{border-bottom:1px solid #c4c4c4;padding:.35rem .5rem;text-align:left;vertical-align:top}\
td.num{text-align:right;white-space:nowrap}th.num{text-align:right}\
.table-wrap{overflow-x:auto;margin:.25rem 0 1rem}.table-wrap:focus-visible{outline:3px solid #f5a623}\
table{font-size:.95rem}tfoot th,tfoot td{font-weight:700;border-top:2px solid #1b1b1b}\
.total{font-size:1.15rem}.status{background:#e7f4ea;border-left:4px solid #1e7b34;padding:.5rem .75rem}\
.consent{border:1px solid #c4c4c4;border-radius:6px;padding:.75rem 1rem;margin-top:1rem}\
h3{font-size:1.05rem;margin:1rem 0 .25rem}ul.consents{list-style:none;padding:0;margin:0}\
li.consent-item{border-top:1px solid #c4c4c4;padding:.5rem 0}\
button{font:inherit;font-weight:600;padding:.55rem 1.1rem;border-radius:4px;border:2px solid #0b3d91;cursor:pointer}\
button.give{background:#0b3d91;color:#fff}button.withdraw{background:#fff;color:#0b3d91}\
button:focus-visible{outline:3px solid #f5a623;outline-offset:2px}\
";

/// NOK from øre, Norwegian style: `12 345,67 kr` (non-breaking spaces).
pub fn nok(ore: i64) -> String {
    let sign = if ore < 0 { "-" } else { "" };
    let abs = ore.unsigned_abs();
    let (kr, øre) = (abs / 100, abs % 100);
    let digits = kr.to_string();
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push('\u{a0}');
        }
        grouped.push(ch);
    }
    format!("{sign}{grouped},{øre:02}\u{a0}kr")
}

/// A rate ×100 as `10,20 %`.
pub fn percent(x100: i64) -> String {
    let sign = if x100 < 0 { "-" } else { "" };
    let abs = x100.unsigned_abs();
    format!("{sign}{},{:02}\u{a0}%", abs / 100, abs % 100)
}

/// `2027-11-24T…` → `24.11.2027`.
pub fn date(rfc3339: &str) -> String {
    match crate::time::parse_rfc3339(rfc3339) {
        Some(t) => format!("{:02}.{:02}.{}", t.day(), u8::from(t.month()), t.year()),
        None => rfc3339.to_owned(),
    }
}

/// What is owed on a loan: the balance of a repayment loan, both balances of a
/// credit facility or charge card.
pub fn outstanding(loan: &Loan) -> i64 {
    let v = |x: Option<i64>| x.unwrap_or(0);
    match loan.loan_type {
        LoanType::RepaymentLoan => v(loan.balance),
        LoanType::CreditFacility | LoanType::ChargeCard => {
            v(loan.interest_bearing_balance) + v(loan.non_interest_bearing_balance)
        }
        LoanType::StudentLoan => {
            v(loan.principal) + v(loan.interest) + v(loan.fees) + v(loan.costs)
        }
        LoanType::CollectionCase => v(loan.principal) + v(loan.interest) + v(loan.fees),
    }
}

/// The type's name in Norwegian (singular for headings, as the register uses them).
pub fn type_name(t: LoanType) -> &'static str {
    match t {
        LoanType::RepaymentLoan => "Nedbetalingslån",
        LoanType::CreditFacility => "Rammekreditt",
        LoanType::ChargeCard => "Faktureringskort",
        LoanType::StudentLoan => "Studielån",
        LoanType::CollectionCase => "Inkassosak",
    }
}

/// The type's wire name, used for element ids.
pub fn type_key(t: LoanType) -> &'static str {
    match t {
        LoanType::RepaymentLoan => "repaymentLoan",
        LoanType::CreditFacility => "creditFacility",
        LoanType::ChargeCard => "chargeCard",
        LoanType::StudentLoan => "studentLoan",
        LoanType::CollectionCase => "collectionCase",
    }
}

const TYPES: [LoanType; 3] = [
    LoanType::RepaymentLoan,
    LoanType::CreditFacility,
    LoanType::ChargeCard,
];

fn amount(x: Option<i64>) -> String {
    x.map(nok).unwrap_or_else(|| "–".to_owned())
}

fn co_borrower(x: Option<i64>) -> &'static str {
    match x {
        Some(1) => "Du er medlåntaker",
        Some(2) => "Har medlåntaker",
        _ => "Nei",
    }
}

/// A table column: its heading, whether it holds a number (right-aligned), and
/// how a loan fills it.
type Column = (&'static str, bool, fn(&Loan) -> String);

/// The type-specific columns after "Kredittyter" and "Gjeld".
fn columns(t: LoanType) -> Vec<Column> {
    let rate: fn(&Loan) -> String = |l| {
        l.nominal_interest_rate
            .map(percent)
            .unwrap_or_else(|| "–".into())
    };
    let ib: fn(&Loan) -> String = |l| amount(l.interest_bearing_balance);
    let nib: fn(&Loan) -> String = |l| amount(l.non_interest_bearing_balance);
    let co: fn(&Loan) -> String = |l| co_borrower(l.co_borrower).to_owned();
    match t {
        LoanType::RepaymentLoan => vec![
            ("Opprinnelig lånebeløp", true, |l| {
                amount(l.original_balance)
            }),
            ("Nominell rente", true, rate),
            ("Gjenstående løpetid", true, |l| {
                l.terms
                    .map(|n| format!("{n}\u{a0}mnd."))
                    .unwrap_or_else(|| "–".into())
            }),
            ("Medlåntaker", false, co),
        ],
        LoanType::CreditFacility => vec![
            ("Rentebærende saldo", true, ib),
            ("Ikke-rentebærende saldo", true, nib),
            ("Kredittgrense", true, |l| amount(l.credit_limit)),
            ("Nominell rente", true, rate),
            ("Medlåntaker", false, co),
        ],
        LoanType::ChargeCard => vec![
            ("Rentebærende saldo", true, ib),
            ("Ikke-rentebærende saldo", true, nib),
            ("Medlåntaker", false, co),
        ],
        // The embedded page shows the register's debt only (see
        // `http::embed`); these columns are for completeness.
        LoanType::StudentLoan => vec![
            ("Lån", true, |l| amount(l.principal)),
            ("Renter", true, |l| amount(l.interest)),
            ("Gebyrer", true, |l| amount(l.fees)),
            ("Omkostninger", true, |l| amount(l.costs)),
        ],
        LoanType::CollectionCase => vec![
            ("Hovedstol", true, |l| amount(l.principal)),
            ("Renter", true, |l| amount(l.interest)),
            ("Gebyrer", true, |l| amount(l.fees)),
            ("Status", false, |l| {
                match l.status {
                    Some(gjeldsbro_adapter::CaseStatus::Active) => "Aktiv",
                    Some(gjeldsbro_adapter::CaseStatus::PaymentPlan) => "Nedbetalingsavtale",
                    Some(gjeldsbro_adapter::CaseStatus::Disputed) => "Omtvistet",
                    Some(gjeldsbro_adapter::CaseStatus::Closed) => "Avsluttet",
                    None => "–",
                }
                .to_owned()
            }),
        ],
    }
}

fn loan_table(t: LoanType, rows: &[(&str, &Loan)]) -> Markup {
    let key = type_key(t);
    let name = type_name(t);
    let total: i64 = rows.iter().map(|(_, l)| outstanding(l)).sum();
    let cols = columns(t);
    html! {
        section aria-labelledby={ "h-" (key) } {
            h2 id={ "h-" (key) } { (name) }
            @if rows.is_empty() {
                p { "Du har ingen registrerte lån av denne typen." }
            } @else {
                // A narrow iframe scrolls the table sideways; the region can take
                // focus so keyboard users can scroll it too.
                div class="table-wrap" role="region" tabindex="0" aria-labelledby={ "h-" (key) } {
                table {
                    caption { (name) ", " (rows.len()) " stk., til sammen " (nok(total)) }
                    thead {
                        tr {
                            th scope="col" { "Kredittyter" }
                            th scope="col" class="num" { "Gjeld" }
                            @for (title, num, _) in &cols {
                                th scope="col" class=[num.then_some("num")] { (title) }
                            }
                        }
                    }
                    tbody {
                        @for (creditor, loan) in rows {
                            tr {
                                th scope="row" { (creditor) }
                                td class="num" { (nok(outstanding(loan))) }
                                @for (_, num, cell) in &cols {
                                    td class=[num.then_some("num")] { (cell(loan)) }
                                }
                            }
                        }
                    }
                    tfoot {
                        tr {
                            th scope="row" { "Sum " (name.to_lowercase()) }
                            td class="num" id={ "sum-" (key) } { (nok(total)) }
                            td colspan=(cols.len()) {}
                        }
                    }
                }
                }
            }
        }
    }
}

fn consent_text(partner: &str, days: u32) -> String {
    format!(
        "Ditt samtykke gir {partner} tilgang til opplysningene over om din usikrede gjeld \
         (nedbetalingslån, rammekreditter og faktureringskort), med navn på kredittyterne, \
         i {days} dager. {partner} kan bare bruke opplysningene til å vise deg oversikt over \
         gjelden din i sine tjenester. Hver gang {partner} henter opplysningene, blir det \
         registrert, og du kan se hver bruk. Du kan når som helst trekke samtykket tilbake."
    )
}

/// The whole page.
pub fn render(p: &Page) -> String {
    let mut groups: Vec<(LoanType, Vec<(&str, &Loan)>)> =
        TYPES.iter().map(|t| (*t, Vec::new())).collect();
    let mut missing: Vec<&str> = Vec::new();
    for e in &p.debt.loans {
        let creditor = e.creditor_name.as_deref().unwrap_or("Ukjent kredittyter");
        match &e.loan {
            Some(loan) => {
                if let Some((_, rows)) = groups.iter_mut().find(|(t, _)| *t == loan.loan_type) {
                    rows.push((creditor, loan));
                }
            }
            None => missing.push(creditor),
        }
    }
    let grand_total: i64 = groups
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|(_, l)| outstanding(l)))
        .sum();
    let partner = p.partner_name;
    let markup = html! {
        (DOCTYPE)
        html lang="nb" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Din usikrede gjeld" }
                style nonce=(p.nonce) { (PreEscaped(CSS)) }
            }
            body {
                main {
                    h1 { "Din usikrede gjeld" }
                    p class="total" {
                        "Samlet gjeld: " strong id="sum-all" { (nok(grand_total)) }
                    }
                    @if !missing.is_empty() {
                        p {
                            "Disse kredittyterne svarte ikke nå, og gjelden hos dem er ikke med: "
                            (missing.join(", ")) "."
                        }
                    }
                    @for (t, rows) in &groups {
                        (loan_table(*t, rows))
                    }
                    section class="consent" aria-labelledby="h-consent" {
                        h2 id="h-consent" { "Del gjeldsopplysningene med " (partner) }
                        @match p.notice {
                            Some(Notice::Given) => p class="status" role="status" { "Samtykket er gitt." },
                            Some(Notice::Withdrawn) => p class="status" role="status" { "Samtykket er trukket tilbake." },
                            None => {},
                        }
                        @if !p.active.is_empty() {
                            h3 { "Samtykker du har gitt " (partner) }
                            ul class="consents" {
                                @for (i, c) in p.active.iter().enumerate() {
                                    li class="consent-item" {
                                        p id={ "consent-" (i) } {
                                            strong { (c.scope_text) } ". "
                                            @if c.one_time { "Gjelder én henting til og med " } @else { "Gjelder til og med " }
                                            (date(&c.ends_at)) ". "
                                            (uses_text(&c.uses))
                                        }
                                        form method="post" action="/embed/v1/consent/withdraw" {
                                            input type="hidden" name="csrf" value=(p.csrf);
                                            input type="hidden" name="partner" value=(p.partner_org);
                                            input type="hidden" name="consent_id" value=(c.id);
                                            @if let Some(r) = p.reference {
                                                input type="hidden" name="ref" value=(r);
                                            }
                                            button type="submit" class="withdraw" aria-describedby={ "consent-" (i) } {
                                                "Trekk tilbake samtykket til " (partner)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        @if !p.active.iter().any(|c| c.presentation) {
                            p id="consent-text" { (consent_text(partner, p.consent_days)) }
                            form method="post" action="/embed/v1/consent" {
                                input type="hidden" name="csrf" value=(p.csrf);
                                input type="hidden" name="partner" value=(p.partner_org);
                                @if let Some(r) = p.reference {
                                    input type="hidden" name="ref" value=(r);
                                }
                                button type="submit" class="give" id="give-consent" aria-describedby="consent-text" {
                                    "Gi samtykke til " (partner)
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    markup.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norwegian_formats() {
        assert_eq!(nok(1_234_567), "12\u{a0}345,67\u{a0}kr");
        assert_eq!(nok(5), "0,05\u{a0}kr");
        assert_eq!(nok(100_000_000), "1\u{a0}000\u{a0}000,00\u{a0}kr");
        assert_eq!(nok(-150), "-1,50\u{a0}kr");
        assert_eq!(percent(1020), "10,20\u{a0}%");
        assert_eq!(date("2027-11-24T10:00:00.000000Z"), "24.11.2027");
    }
}
