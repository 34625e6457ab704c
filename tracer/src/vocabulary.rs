//! The output's vocabulary: every value-like enum that reaches a line, a metric label or
//! a replayed trace is spelled by one table beside its type. [`names!`] writes, from that
//! table, `name()` (what the lines and labels say), `ALL` (every value, for metrics'
//! zero series and tests), `FromStr` (what replay and the command line read back),
//! `Display` and `Serialize`; a new variant without a name does not compile, and one name serves every
//! room.

use std::{fmt, str::FromStr};

/// A vocabulary: the names of a fieldless enum's values, written by [`names!`].
pub trait Named:
    Copy + fmt::Display + FromStr<Err = UnknownName> + Send + Sync + Sized + 'static
{
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// Every name, in the order of [`Named::ALL`].
    const NAMES: &'static [&'static str];
    /// As the lines, the metrics' labels and the command line spell it.
    fn name(self) -> &'static str;
}

/// A name that is not one of a vocabulary's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being named, e.g. "direction".
    pub what: &'static str,
    pub name: String,
    /// The names it could have been.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a {} (one of {})",
            self.name,
            self.what,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

/// `names!(Type as "what" { Variant => "name", ... })`: the vocabulary of a fieldless
/// enum (see the module docs).
macro_rules! names {
    ($type:ident as $what:literal { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// As the lines, the metrics' labels and the command line spell it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }

        impl $crate::vocabulary::Named for $type {
            const ALL: &'static [Self] = Self::ALL;
            const NAMES: &'static [&'static str] = &[$($name),+];

            fn name(self) -> &'static str {
                Self::name(self)
            }
        }

        impl ::std::str::FromStr for $type {
            type Err = $crate::vocabulary::UnknownName;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                match name {
                    $($name => Ok(Self::$variant),)+
                    _ => Err($crate::vocabulary::UnknownName {
                        what: $what,
                        name: name.to_owned(),
                        expected: <Self as $crate::vocabulary::Named>::NAMES,
                    }),
                }
            }
        }

        impl ::std::fmt::Display for $type {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::serde::Serialize for $type {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }
    };
}
pub(crate) use names;

/// The value after `current` in `all` (a type's `ALL`), the first after the last: what a
/// key that cycles through the values shows next.
pub fn following<T: Copy + PartialEq>(all: &[T], current: T) -> T {
    let at = all.iter().position(|value| *value == current).unwrap_or(0);
    all[(at + 1) % all.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Fruit {
        Apple,
        BloodOrange,
    }

    names!(Fruit as "fruit" {
        Apple => "apple",
        BloodOrange => "blood_orange",
    });

    #[test]
    fn names_write_and_read_back() {
        for &fruit in Fruit::ALL {
            assert_eq!(fruit.name().parse::<Fruit>(), Ok(fruit));
            assert_eq!(fruit.to_string(), fruit.name());
            assert_eq!(
                serde_json::to_string(&fruit).unwrap(),
                format!("\"{}\"", fruit.name())
            );
        }
        assert_eq!(<Fruit as Named>::NAMES, ["apple", "blood_orange"]);
        let unknown = "pear".parse::<Fruit>().unwrap_err();
        assert_eq!(
            unknown.to_string(),
            r#""pear" is not a fruit (one of apple, blood_orange)"#
        );
    }
}
