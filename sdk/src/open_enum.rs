//! Enums that can grow: a `u8` with named values instead of a Rust `enum`.
//!
//! abi_stable refuses a library whose exhaustive enum has another number of variants
//! than the host's, so a Rust `enum` crossing the boundary could never gain a variant
//! without breaking every built plugin. These types are one byte wide whatever values
//! later minor versions name, and a value this version does not know reads as the
//! type's fallback name instead of being undefined behaviour. Each is described once,
//! in [`open_enum!`]: its values, their names in JSON and logs, and the fallback.

/// Declare an open enum: a transparent `u8` with one associated constant per value,
/// its stable lower-case names (used by `as_str`, `Debug` and serde), and the name
/// of any value this version does not know.
///
/// The constants keep the names a Rust enum's variants would have, so they read like
/// variants in patterns: `match kind { DeviceKind::Cpu => …, _ => … }`.
#[macro_export]
#[doc(hidden)]
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$value_meta:meta])* $value:ident = $code:literal => $text:literal, )+
        }
        unknown => $unknown:literal;
    ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive($crate::abi_stable::StableAbi, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(u8);

        #[allow(non_upper_case_globals)]
        impl $name {
            $( $(#[$value_meta])* pub const $value: Self = Self($code); )+

            /// Every value this version of the SDK names, in order.
            pub const KNOWN: &'static [Self] = &[$(Self::$value),+];

            /// The stable lower-case name, for logs and JSON.
            pub fn as_str(self) -> &'static str {
                match self.0 {
                    $( $code => $text, )+
                    _ => $unknown,
                }
            }

            /// The value with this name, if this version knows it.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::KNOWN.iter().copied().find(|known| known.as_str() == name)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self.0 {
                    $( $code => f.write_str(stringify!($value)), )+
                    other => write!(f, "{}({other})", stringify!($name)),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                Self::from_name(&name).ok_or_else(|| {
                    ::serde::de::Error::custom(format!(
                        "unknown {} `{name}`",
                        stringify!($name)
                    ))
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::{DeviceKind, ErrorKind, FinishReason, SinkControl};

    #[test]
    fn every_known_value_round_trips_through_its_name() {
        for kind in DeviceKind::KNOWN {
            assert_eq!(DeviceKind::from_name(kind.as_str()), Some(*kind));
        }
        for kind in ErrorKind::KNOWN {
            assert_eq!(ErrorKind::from_name(kind.as_str()), Some(*kind));
        }
        for reason in FinishReason::KNOWN {
            let json = serde_json::to_string(reason).unwrap();
            assert_eq!(serde_json::from_str::<FinishReason>(&json).unwrap(), *reason);
        }
        assert_eq!(SinkControl::from_name("stop"), Some(SinkControl::Stop));
    }

    #[test]
    fn a_value_from_a_later_version_reads_as_the_fallback_and_shows_its_code() {
        let later: DeviceKind = unsafe { std::mem::transmute(200u8) };
        assert_eq!(later.as_str(), "other");
        assert_eq!(format!("{later:?}"), "DeviceKind(200)");
        let later: ErrorKind = unsafe { std::mem::transmute(99u8) };
        assert_eq!(later.as_str(), "internal");
    }

    #[test]
    fn an_unknown_name_is_refused_naming_it() {
        let error = serde_json::from_str::<DeviceKind>("\"quantum\"").unwrap_err();
        assert!(error.to_string().contains("unknown DeviceKind `quantum`"), "{error}");
    }
}
