//! The page's hooks (its `data-testid` attributes and rows keyed by
//! name or address) as CSS selectors, and reading what it prints.

use crate::support::browser::testid;

/// The row of `service` in the services table.
pub fn service_row(service: &str) -> String {
    format!(
        r#"{} tr[data-service="{service}"]"#,
        testid("services-table")
    )
}

/// The row of `addr` in the instances table, or a cell/button in it.
pub fn instance(addr: &str, inner: &str) -> String {
    format!(
        r#"{} tr[data-addr="{addr}"] {inner}"#,
        testid("instances-table")
    )
    .trim_end()
    .to_owned()
}

/// Seconds in a lease text like `12s` (`1m 5s` and `65 s` read too).
pub fn seconds(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'm' | 's' | 'h' if !number.is_empty() => {
                let n: u64 = number.parse().ok()?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
                any = true;
            }
            _ => {}
        }
    }
    any.then_some(total)
}

/// An item of the events feed: `kind` of `addr` in `service`.
pub fn event_item(kind: &str, service: &str, addr: &str) -> String {
    format!(
        r#"{} li[data-event="{kind}"][data-service="{service}"][data-addr="{addr}"]"#,
        testid("events-list")
    )
}

/// The lease texts the page prints read as seconds.
#[test]
fn lease_texts_read_as_seconds() {
    assert_eq!(seconds("12s"), Some(12));
    assert_eq!(seconds("1m 5s"), Some(65));
    assert_eq!(seconds("expired"), None);
}
