//! Typed ids: a request (`req_…`) and a lineage of re-submissions (`lin_…`). On the wire and
//! in storage they are plain text; in code they are types, so one cannot stand for the other.
//! Minting one (from a fresh UUID) is the caller's job: the engine reads no clock and no
//! randomness.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// What every id of this kind that signoff mints starts with.
            pub const PREFIX: &'static str = $prefix;

            /// The id `PREFIX` + `key` (e.g. a UUID's simple form).
            pub fn from_key(key: &str) -> Self {
                $name(format!("{}{key}", $prefix))
            }

            /// What follows the prefix (the whole id, for one signoff did not mint).
            pub fn key(&self) -> &str {
                self.0.strip_prefix($prefix).unwrap_or(&self.0)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        /// Any text names an id of this kind: one that names nothing is not found, not invalid.
        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name(text.to_string())
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                $name(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

id_type!(
    /// A request's id.
    RequestId,
    "req_"
);

id_type!(
    /// The id of a lineage: a request and every re-submission of it.
    LineageId,
    "lin_"
);

impl LineageId {
    /// The lineage a first request starts: its key under `lin_`.
    pub fn started_by(request: &RequestId) -> LineageId {
        LineageId::from_key(request.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lineage_takes_its_first_requests_key() {
        let r = RequestId::from_key("0194f3");
        assert_eq!(r, "req_0194f3");
        assert_eq!(LineageId::started_by(&r), "lin_0194f3");
        assert_eq!(RequestId::from("req_x").key(), "x");
        assert_eq!(RequestId::from("other").key(), "other", "an id signoff did not mint is its own key");
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"req_0194f3\"");
    }
}
