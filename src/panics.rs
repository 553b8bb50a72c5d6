//! What a caught panic says.

use std::any::Any;

/// The message a panic was raised with (`panic!("...")` or a formatted one), or "" when its
/// payload is something else.
pub fn message(panic: &(dyn Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{self, AssertUnwindSafe};

    use super::*;

    fn caught(f: impl FnOnce()) -> Box<dyn Any + Send> {
        panic::catch_unwind(AssertUnwindSafe(f)).expect_err("it panics")
    }

    #[test]
    fn a_panic_says_its_literal_or_formatted_message_and_nothing_else() {
        assert_eq!(message(&*caught(|| panic!("plain"))), "plain");
        let n = 7;
        assert_eq!(message(&*caught(|| panic!("formatted {n}"))), "formatted 7");
        assert_eq!(message(&*caught(|| panic::panic_any(42_u32))), "");
    }
}
