//! Who owes the person a copy letter for a disclosure (DOMAIN.md, the purposes
//! table). Stored in the log as text; the letter batch selects on `broker`.

/// Who sends the person the copy letter for one disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterOwedBy {
    /// The broker sends it (a search by a financial institution).
    Broker,
    /// The credit bureau that asked sends it.
    CreditBureau,
    /// The recipient notifies the person itself (`usingOwnNotification`).
    Recipient,
    /// Nobody: the person agreed to the lookup (a consent).
    None,
}

impl LetterOwedBy {
    /// The text in the log's `letter_owed_by` column. These exact strings are in
    /// every log written so far and in the letter batch's SQL: never change them.
    pub fn as_str(self) -> &'static str {
        match self {
            LetterOwedBy::Broker => "broker",
            LetterOwedBy::CreditBureau => "credit_bureau",
            LetterOwedBy::Recipient => "recipient",
            LetterOwedBy::None => "none",
        }
    }

    /// Who owes the letter for a search. A bureau owes it whatever the body says:
    /// it asked on someone else's behalf and answers for telling the person.
    pub fn for_search(via_bureau: bool, using_own_notification: bool) -> Self {
        if via_bureau {
            LetterOwedBy::CreditBureau
        } else if using_own_notification {
            LetterOwedBy::Recipient
        } else {
            LetterOwedBy::Broker
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LetterOwedBy;

    /// The strings are on disk in every log and in the letter batch's query.
    #[test]
    fn strings_are_those_in_the_log() {
        assert_eq!(LetterOwedBy::Broker.as_str(), "broker");
        assert_eq!(LetterOwedBy::CreditBureau.as_str(), "credit_bureau");
        assert_eq!(LetterOwedBy::Recipient.as_str(), "recipient");
        assert_eq!(LetterOwedBy::None.as_str(), "none");
    }

    #[test]
    fn a_bureau_owes_the_letter_even_with_own_notification() {
        assert_eq!(
            LetterOwedBy::for_search(true, true),
            LetterOwedBy::CreditBureau
        );
        assert_eq!(
            LetterOwedBy::for_search(false, true),
            LetterOwedBy::Recipient
        );
        assert_eq!(LetterOwedBy::for_search(false, false), LetterOwedBy::Broker);
    }
}
