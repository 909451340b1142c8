//! The stable error codes of signoff's contract, each with the HTTP status it is answered with:
//! one table, so a code cannot exist without its status.

use std::fmt;

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal, $status:literal;)*) => {
        /// A stable error code: what a client branches on (`docs/reference/api.md` lists them).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in the table's order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as clients see it, e.g. `step_not_active`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// The HTTP status a refusal with this code is answered with.
            pub const fn http_status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)*
                }
            }

            /// The code named `text`, if it is one.
            pub fn parse(text: &str) -> Option<Code> {
                match text {
                    $($text => Some(Code::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    MalformedJson = "malformed_json", 400;
    BadParameter = "bad_parameter", 400;
    TooDeep = "too_deep", 400;
    MalformedRequest = "malformed_request", 400;
    Unauthenticated = "unauthenticated", 401;
    NotAnApprover = "not_an_approver", 403;
    SeparationOfDuties = "separation_of_duties", 403;
    Forbidden = "forbidden", 403;
    NotFound = "not_found", 404;
    MethodNotAllowed = "method_not_allowed", 405;
    StepNotActive = "step_not_active", 409;
    RequestClosed = "request_closed", 409;
    AcksPending = "acks_pending", 409;
    IdempotencyConflict = "idempotency_conflict", 409;
    NotTerminal = "not_terminal", 409;
    AlreadyVoted = "already_voted", 409;
    AlreadyAnApprover = "already_an_approver", 409;
    RequestTimeout = "request_timeout", 408;
    /// An emailed link past its expiry.
    LinkExpired = "link_expired", 410;
    TooLarge = "too_large", 413;
    UriTooLong = "uri_too_long", 414;
    UnsupportedMediaType = "unsupported_media_type", 415;
    InvalidContext = "invalid_context", 422;
    InvalidPolicy = "invalid_policy", 422;
    PlanningError = "planning_error", 422;
    NoEligibleApprovers = "no_eligible_approvers", 422;
    EditKeyNotAllowed = "edit_key_not_allowed", 422;
    EditSchemaInvalid = "edit_schema_invalid", 422;
    EditDiffTooLarge = "edit_diff_too_large", 422;
    DelegationCycle = "delegation_cycle", 422;
    UnknownPolicy = "unknown_policy", 422;
    CommentRequired = "comment_required", 422;
    UnknownUser = "unknown_user", 422;
    RateLimited = "rate_limited", 429;
    ResubmitCooldown = "resubmit_cooldown", 429;
    LineageLimit = "lineage_limit", 429;
    HeadersTooLarge = "headers_too_large", 431;
    Internal = "internal", 500;
    Unavailable = "unavailable", 503;
    Busy = "busy", 503;
}

impl Code {
    /// Whether the caller can fix it (a 4xx), rather than the server (a 5xx).
    pub const fn is_client_error(self) -> bool {
        self.http_status() < 500
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Code::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{text}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_and_is_an_error_status() {
        for &code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert!((400..600).contains(&code.http_status()), "{code}");
        }
        let mut texts: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), Code::ALL.len(), "codes are unique");
    }
}
