//! How every layer reports an error in one line: the error and its causes (its
//! [`Error::source`] chain), `outer: cause: root cause`. Log lines write `error = %chain(&e)`,
//! the binary prints the same on failure, so the reason a connection or a database call
//! failed ("Connection refused", "disk I/O error") is never cut off at the outermost message.

use std::error::Error;
use std::fmt;

/// `err` and its sources joined by `": "`, as a value to format (`%chain(&e)` in a tracing
/// field, `{}` in a message).
///
/// A cause whose message is already part of the text is left out: several crates (sqlx among
/// them) repeat their source's message in their own, and it need not be read twice.
pub fn chain<'a>(err: &'a (dyn Error + 'a)) -> Chain<'a> {
    Chain(err)
}

/// An error with its causes; see [`chain`].
#[derive(Clone, Copy)]
pub struct Chain<'a>(&'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        f.write_str(&text)
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn e(msg: &'static str, cause: Option<E>) -> E {
        E(msg, cause.map(Box::new))
    }

    #[test]
    fn joins_every_cause_with_a_colon() {
        let err = e(
            "request failed",
            Some(e("tcp connect error", Some(e("Connection refused", None)))),
        );
        assert_eq!(
            chain(&err).to_string(),
            "request failed: tcp connect error: Connection refused"
        );
        assert_eq!(chain(&e("alone", None)).to_string(), "alone");
    }

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let err = e(
            "error returned from database: (code: 5) database is locked",
            Some(e("(code: 5) database is locked", None)),
        );
        assert_eq!(
            chain(&err).to_string(),
            "error returned from database: (code: 5) database is locked"
        );
    }

    #[test]
    fn takes_io_errors_and_borrowed_trait_objects() {
        let io = std::io::Error::other(e("inner", None));
        let dynamic: &dyn Error = &io;
        assert_eq!(format!("{}", chain(dynamic)), "inner");
        assert_eq!(format!("{:?}", chain(&io)), "inner");
    }
}
