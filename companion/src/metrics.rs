//! The key service's metrics: the one list of them (the `counters!` call below), their atomics,
//! and the Prometheus text exposition (format 0.0.4) that `GET /metrics` answers.
//!
//! - **Cheap.** A count is one relaxed atomic add: no lock, no allocation, no database work.
//!   Rendering reads the atomics and nothing else, so `/metrics` answers during any flood.
//! - **Bounded.** Labels take values from fixed sets declared in the list, never from a request
//!   (no namespace, no token id, no path): the exposition always has the same lines.
//! - **Who counts.** The service counts what happens to tokens and key-set lookups
//!   ([`crate::service`]); the server counts its HTTP answers in one middleware
//!   (`server::metrics`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// `Content-Type` of the exposition.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A family of counter series: one name, `# HELP` and `# TYPE counter` lines, and a series per
/// value of its label (a single unlabelled series if it has none).
#[derive(Debug)]
pub struct CounterFamily {
    /// Metric name, ending in `_total`.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// The label's name, if the family has one.
    pub label: Option<&'static str>,
    /// Each series, with its label value (`None` exactly when the family has no label).
    pub series: &'static [(Counter, Option<&'static str>)],
}

/// Declares every counter once: the [`Counter`] enum (one variant per series) and
/// [`COUNTER_FAMILIES`] (the exposition's families, in order). Each family is written
/// `"name"["label"]: "help" { Variant = "label value", … }`, or `"name": "help" { Variant }`.
macro_rules! counters {
    ($(
        $name:literal $([$label:literal])? : $help:literal {
            $($(#[$doc:meta])* $counter:ident $(= $value:literal)?),+ $(,)?
        }
    )+) => {
        /// One counter series (see [`COUNTER_FAMILIES`] for its name, label and meaning).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($($(#[$doc])* $counter,)+)+
        }

        impl Counter {
            /// Every series, in declaration order (which is also the order of the discriminants).
            pub const ALL: &'static [Counter] = &[$($(Counter::$counter,)+)+];
        }

        /// Every counter family, in exposition order: the one list of the service's counters.
        pub const COUNTER_FAMILIES: &[CounterFamily] = &[$(
            CounterFamily {
                name: $name,
                help: $help,
                label: counters!(@option $($label)?),
                series: &[$((Counter::$counter, counters!(@option $($value)?)),)+],
            },
        )+];
    };
    (@option) => { None };
    (@option $value:literal) => { Some($value) };
}

counters! {
    "tokengate_tokens_created_total": "Tokens created: minted, stored and answered 201." {
        /// A token was created.
        TokensCreated,
    }
    "tokengate_tokens_deleted_total": "Tokens deleted (revoked): their keys left the key set." {
        /// A token was deleted.
        TokensDeleted,
    }
    "tokengate_jwks_requests_total"["result"]:
        "Key-set requests (GET /v1/namespaces/{ns}/jwks.json) by answer: 200 key set sent, 304 not \
         modified (If-None-Match), 400 bad namespace name, 503 busy or no answer in time." {
        /// A key set was sent.
        JwksSent = "200",
        /// The client's copy was current.
        JwksNotModified = "304",
        /// The namespace name is not a valid id.
        JwksBadRequest = "400",
        /// The service was too busy, or took too long.
        JwksUnavailable = "503",
    }
    "tokengate_jwks_cache_total"["result"]:
        "Key-set lookups: hit = served from the 1 s cache (or from a read another request made), \
         miss = read from the database by this request." {
        /// A lookup served without a database read of its own.
        JwksCacheHit = "hit",
        /// A lookup that read the database (successfully or not).
        JwksCacheMiss = "miss",
    }
    "tokengate_admin_requests_total"["status_class"]:
        "Admin API answers (/v1/tokens...) by status class; refused authentications are 4xx." {
        /// A 2xx admin answer.
        Admin2xx = "2xx",
        /// A 4xx admin answer.
        Admin4xx = "4xx",
        /// A 5xx admin answer.
        Admin5xx = "5xx",
    }
    "tokengate_auth_failures_total": "Admin requests refused 401: missing or wrong admin token." {
        /// An admin request was refused 401.
        AuthFailures,
    }
    "tokengate_errors_total": "5xx answers of any route, timeouts and overload 503s included." {
        /// A 5xx answer.
        Errors,
    }
    "tokengate_namespace_full_total":
        "Token creations refused 409 namespace_full (the namespace publishes the most keys allowed)." {
        /// A create was refused: the namespace is full.
        NamespaceFull,
    }
}

/// The one gauge: always 1, its label names the running version.
pub const BUILD_INFO: &str = "tokengate_build_info";

/// `# HELP` of [`BUILD_INFO`].
const BUILD_INFO_HELP: &str = "Always 1; the version label names the running tokengate build.";

/// The version [`BUILD_INFO`] reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How many counter series there are.
const SERIES: usize = Counter::ALL.len();

/// The process's counters, shared by everyone who counts.
#[derive(Debug)]
pub struct Metrics {
    values: [AtomicU64; SERIES],
}

impl Default for Metrics {
    fn default() -> Self {
        Self { values: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn count(&self, counter: Counter) {
        if let Some(value) = self.values.get(counter as usize) {
            value.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The current value of `counter`.
    pub fn value(&self, counter: Counter) -> u64 {
        self.values.get(counter as usize).map_or(0, |value| value.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(2048);
        // Writing into a String cannot fail.
        let _ = self.write_exposition(&mut text);
        text
    }

    fn write_exposition(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for family in COUNTER_FAMILIES {
            write_header(out, family.name, family.help, "counter")?;
            for &(counter, label_value) in family.series {
                out.write_str(family.name)?;
                if let (Some(label), Some(label_value)) = (family.label, label_value) {
                    write_label(out, label, label_value)?;
                }
                writeln!(out, " {}", self.value(counter))?;
            }
        }
        write_header(out, BUILD_INFO, BUILD_INFO_HELP, "gauge")?;
        out.write_str(BUILD_INFO)?;
        write_label(out, "version", VERSION)?;
        out.write_str(" 1\n")
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
fn write_header(out: &mut impl fmt::Write, name: &str, help: &str, kind: &str) -> fmt::Result {
    write!(out, "# HELP {name} ")?;
    for character in help.chars() {
        match character {
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            other => out.write_char(other)?,
        }
    }
    writeln!(out, "\n# TYPE {name} {kind}")
}

/// `{label="value"}`, the value escaped as the format requires.
fn write_label(out: &mut impl fmt::Write, label: &str, value: &str) -> fmt::Result {
    write!(out, "{{{label}=\"")?;
    for character in value.chars() {
        match character {
            '\\' => out.write_str("\\\\")?,
            '"' => out.write_str("\\\"")?,
            '\n' => out.write_str("\\n")?,
            other => out.write_char(other)?,
        }
    }
    out.write_str("\"}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn valid_name(name: &str) -> bool {
        let mut characters = name.chars();
        characters.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && characters.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    #[test]
    fn the_list_declares_each_series_once() {
        let listed: Vec<Counter> =
            COUNTER_FAMILIES.iter().flat_map(|family| family.series.iter().map(|(counter, _)| *counter)).collect();
        assert_eq!(listed, Counter::ALL, "families list every series once, in declaration order");
        for (index, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, index);
        }
        let mut names = HashSet::new();
        for family in COUNTER_FAMILIES {
            assert!(names.insert(family.name), "{} declared twice", family.name);
            assert!(valid_name(family.name) && family.name.starts_with("tokengate_"), "{}", family.name);
            assert!(family.name.ends_with("_total"), "{}: counters end in _total", family.name);
            assert!(!family.help.is_empty() && !family.help.contains('\n'), "{}", family.name);
            let mut values = HashSet::new();
            for (_, value) in family.series {
                assert_eq!(family.label.is_some(), value.is_some(), "{}: label and values go together", family.name);
                assert!(values.insert(value), "{}: label value {value:?} twice", family.name);
            }
            if let Some(label) = family.label {
                assert!(valid_name(label) && !label.starts_with("__"), "{label}");
            } else {
                assert_eq!(family.series.len(), 1, "{}", family.name);
            }
        }
        assert!(!names.contains(BUILD_INFO));
    }

    #[test]
    fn renders_the_text_format() {
        let metrics = Metrics::default();
        metrics.count(Counter::TokensCreated);
        metrics.count(Counter::TokensCreated);
        metrics.count(Counter::JwksNotModified);
        metrics.count(Counter::Admin4xx);
        let text = metrics.render();
        assert!(text.starts_with(
            "# HELP tokengate_tokens_created_total Tokens created: minted, stored and answered 201.\n\
             # TYPE tokengate_tokens_created_total counter\n\
             tokengate_tokens_created_total 2\n\
             # HELP tokengate_tokens_deleted_total "
        ));
        for line in [
            "# TYPE tokengate_jwks_requests_total counter\n\
             tokengate_jwks_requests_total{result=\"200\"} 0\n\
             tokengate_jwks_requests_total{result=\"304\"} 1\n\
             tokengate_jwks_requests_total{result=\"400\"} 0\n\
             tokengate_jwks_requests_total{result=\"503\"} 0\n",
            "tokengate_admin_requests_total{status_class=\"4xx\"} 1\n",
            "tokengate_tokens_deleted_total 0\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(text.ends_with(&format!(
            "# HELP tokengate_build_info Always 1; the version label names the running tokengate build.\n\
             # TYPE tokengate_build_info gauge\n\
             tokengate_build_info{{version=\"{VERSION}\"}} 1\n"
        )));
    }

    #[test]
    fn every_sample_follows_its_help_and_type() {
        let metrics = Metrics::default();
        for counter in Counter::ALL {
            metrics.count(*counter);
        }
        let text = metrics.render();
        let mut declared: Option<String> = None;
        let (mut families, mut samples) = (0, 0);
        let mut seen = HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty() && valid_name(name), "{line}");
                assert!(declared.is_none(), "HELP twice before TYPE: {line}");
                declared = Some(name.to_owned());
                families += 1;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(declared.take().as_deref(), Some(name), "TYPE without HELP: {line}");
                assert!(matches!(kind, "counter" | "gauge"), "{line}");
                seen.insert(name.to_owned());
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                assert_eq!(value, "1", "{line}");
                let name = series.split('{').next().unwrap();
                assert!(seen.contains(name), "sample before its TYPE: {line}");
                if let Some(labels) = series.strip_prefix(name).filter(|labels| !labels.is_empty()) {
                    let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')).unwrap();
                    let (label, quoted) = inner.split_once('=').unwrap();
                    assert!(valid_name(label) && quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
                }
                samples += 1;
            }
        }
        assert_eq!(families, COUNTER_FAMILIES.len() + 1);
        assert_eq!(samples, Counter::ALL.len() + 1);
    }

    #[test]
    fn escapes_help_and_label_values() {
        let cases: &[(&str, &str)] = &[
            ("plain", "{v=\"plain\"}"),
            ("a\"b", "{v=\"a\\\"b\"}"),
            ("back\\slash", "{v=\"back\\\\slash\"}"),
            ("two\nlines", "{v=\"two\\nlines\"}"),
        ];
        for (value, want) in cases {
            let mut out = String::new();
            write_label(&mut out, "v", value).unwrap();
            assert_eq!(out, *want, "{value:?}");
        }
        let mut out = String::new();
        write_header(&mut out, "m", "a \"quoted\" \\ and\nnewline", "counter").unwrap();
        assert_eq!(out, "# HELP m a \"quoted\" \\\\ and\\nnewline\n# TYPE m counter\n");
    }

    #[test]
    fn counts_are_shared_between_threads() {
        let metrics = Metrics::default();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        metrics.count(Counter::Errors);
                    }
                });
            }
        });
        assert_eq!(metrics.value(Counter::Errors), 4000);
        assert_eq!(metrics.value(Counter::AuthFailures), 0);
    }
}
