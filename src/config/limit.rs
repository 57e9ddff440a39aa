//! Counts that must be at least 1, refused at their line and column when they are 0,
//! so the code that uses them holds a `NonZero*` and never clamps.

use std::num::NonZeroU64;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// Deserialize a count into its `NonZero*` type (`#[serde(deserialize_with =
/// "crate::config::at_least_one")]`). Refuses 0 with a message that says why (serde's
/// own says "expected a nonzero usize").
pub(crate) fn at_least_one<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<NonZeroU64>,
{
    let n = u64::deserialize(d)?;
    let n = NonZeroU64::new(n)
        .ok_or_else(|| D::Error::custom("0 cannot work: it must be at least 1"))?;
    T::try_from(n).map_err(|_| D::Error::custom(format_args!("{n} is too large")))
}
