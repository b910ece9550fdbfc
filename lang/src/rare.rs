//! [`Rare`]: the fields most values of a type leave unset, kept behind one pointer that is only
//! allocated when one of them is set. A firewall rule has thirty-odd optional matches and
//! statements; a typical rule uses four. Inline, the unset ones made `ast::RuleDecl` 1,344
//! bytes and `ir::Rule` 992, and 100,000 rules cost 360 MB of `check` (ARCHITECTURE.md,
//! "Decisions changed, with evidence").
//!
//! A `Rare<T>` reads as `T` (unset: `T::EMPTY`), so code reading its fields does not change;
//! writing through it allocates. Build it whole with [`Rare::new`], which keeps nothing for an
//! empty value.
//!
//! What it must not do: hold a field most values set (that costs an allocation each).

use std::fmt;
use std::ops::{Deref, DerefMut};

/// `impl Deref for $outer { Target = $more }` through its `more: Rare<$more>` field: the struct
/// reads its seldom-set fields as its own (`rule.log`, not `rule.more.log`).
#[macro_export]
macro_rules! reads_rare_fields {
    ($outer:ty => $more:ty) => {
        impl std::ops::Deref for $outer {
            type Target = $more;

            fn deref(&self) -> &$more {
                &self.more
            }
        }
    };
}

/// A type with an empty value (every field unset) that a [`Rare`] reads as when nothing is set.
pub trait Empty: Default + PartialEq + 'static {
    const EMPTY: &'static Self;
}

/// `T`'s fields behind one pointer, allocated only when one is set.
#[derive(Clone, PartialEq)]
pub struct Rare<T>(Option<Box<T>>);

impl<T: Empty> Rare<T> {
    /// `value`, kept only when it is not empty.
    pub fn new(value: T) -> Rare<T> {
        Rare((value != *T::EMPTY).then(|| Box::new(value)))
    }
}

impl<T> Rare<T> {
    /// Nothing set (a constant, for an `Empty::EMPTY` that holds a `Rare`).
    pub const EMPTY: Rare<T> = Rare(None);

    /// Nothing set (no allocation kept).
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl<T> Default for Rare<T> {
    fn default() -> Rare<T> {
        Rare(None)
    }
}

impl<T: Empty> From<T> for Rare<T> {
    fn from(value: T) -> Rare<T> {
        Rare::new(value)
    }
}

impl<T: Empty> Deref for Rare<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::EMPTY)
    }
}

impl<T: Empty> DerefMut for Rare<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Default::default)
    }
}

impl<T: Empty + fmt::Debug> fmt::Debug for Rare<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Default, PartialEq)]
    struct Extra {
        a: Option<u32>,
        b: Vec<u8>,
    }

    impl Empty for Extra {
        const EMPTY: &'static Extra = &Extra { a: None, b: Vec::new() };
    }

    #[test]
    fn an_empty_value_allocates_nothing_and_reads_as_empty() {
        let r = Rare::new(Extra::default());
        assert!(r.0.is_none());
        assert_eq!(r.a, None);
        assert!(r.b.is_empty());
    }

    #[test]
    fn a_set_field_is_kept_and_writing_allocates() {
        let r = Rare::new(Extra { a: Some(7), b: Vec::new() });
        assert_eq!(r.a, Some(7));
        let mut w: Rare<Extra> = Rare::default();
        w.b.push(1);
        assert_eq!(*w, Extra { a: None, b: vec![1] });
    }
}
