//! The `/` query: fuzzy words over names, labels and metadata, plus exact filters.
//!
//! ```text
//! nginx prod              fuzzy: both words somewhere in name, labels or metadata
//! kind:container          type of node (host, container, process, connection, agent, framework, task)
//! label:app=web label:tier   a label with that value, or a label present
//! ns:payments             container / pod namespace
//! host:node-3             hostname contains
//! state:running           state contains (containers, connections, tasks, agents)
//! cpu>50%  mem>1G  rss<200M  conns>=10  in>1M  out>1M   metric thresholds
//! ```
use nucleo_matcher::{
    Config, Matcher, Utf32Str,
    pattern::{CaseMatching, Normalization, Pattern},
};

/// What a filter can ask of a row.
pub trait Filterable {
    /// `host`, `container`, `process`, `connection`, `agent`, `framework`, `task`.
    fn kind(&self) -> &'static str;
    /// Labels as (key, value).
    fn labels(&self) -> Vec<(&str, &str)>;
    fn namespace(&self) -> &str {
        ""
    }
    fn hostname(&self) -> &str;
    fn state(&self) -> &str {
        ""
    }
    /// A metric by the name used in thresholds: cpu (percent), mem (bytes), conns, in, out
    /// (bytes per second).
    fn metric(&self, name: Metric) -> Option<f64>;
    /// Everything the fuzzy words are matched against, appended to `out`.
    fn haystack(&self, out: &mut String);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cpu,
    Memory,
    Connections,
    In,
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Kind(String),
    Label(String, Option<String>),
    Namespace(String),
    Host(String),
    State(String),
    Threshold(Metric, Op, f64),
}

/// A parsed query. The empty query matches everything.
#[derive(Debug, Default)]
pub struct Query {
    text: String,
    terms: Vec<Term>,
    fuzzy: Option<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(String);

impl Query {
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let mut terms = Vec::new();
        let mut words = Vec::new();
        for token in text.split_whitespace() {
            if let Some(term) = threshold(token)? {
                terms.push(term);
                continue;
            }
            match token.split_once(':') {
                Some(("kind" | "type", v)) => terms.push(Term::Kind(v.to_lowercase())),
                Some(("label" | "l", v)) => terms.push(match v.split_once('=') {
                    Some((k, v)) => Term::Label(k.to_owned(), Some(v.to_owned())),
                    None => Term::Label(v.to_owned(), None),
                }),
                Some(("ns" | "namespace", v)) => terms.push(Term::Namespace(v.to_lowercase())),
                Some(("host", v)) => terms.push(Term::Host(v.to_lowercase())),
                Some(("state", v)) => terms.push(Term::State(v.to_lowercase())),
                _ => words.push(token),
            }
        }
        let fuzzy = (!words.is_empty())
            .then(|| Pattern::parse(&words.join(" "), CaseMatching::Ignore, Normalization::Smart));
        Ok(Query {
            text: text.trim().to_owned(),
            terms,
            fuzzy,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty() && self.fuzzy.is_none()
    }

    /// Whether what passes can change when only values change (thresholds, states); names,
    /// labels and places are taken as fixed between membership changes.
    pub fn depends_on_values(&self) -> bool {
        self.terms
            .iter()
            .any(|t| matches!(t, Term::Threshold(..) | Term::State(_)))
    }

    /// Whether the query has fuzzy words (rows are then ranked by how well they match).
    pub fn is_fuzzy(&self) -> bool {
        self.fuzzy.is_some()
    }

    /// Whether `item` passes; `scratch` and `matcher` are reused across items.
    pub fn matches(&self, item: &dyn Filterable, scratch: &mut Scratch) -> bool {
        self.score(item, scratch).is_some()
    }

    /// `None` when `item` does not pass, else how well the fuzzy words match (0 without any).
    pub fn score(&self, item: &dyn Filterable, scratch: &mut Scratch) -> Option<u32> {
        for term in &self.terms {
            let ok = match term {
                Term::Kind(k) => item.kind().starts_with(k.as_str()),
                Term::Label(key, value) => item
                    .labels()
                    .iter()
                    .any(|(k, v)| k == key && value.as_ref().is_none_or(|want| v == want)),
                Term::Namespace(ns) => item.namespace().to_lowercase() == *ns,
                Term::Host(h) => item.hostname().to_lowercase().contains(h.as_str()),
                Term::State(s) => item.state().to_lowercase().contains(s.as_str()),
                Term::Threshold(metric, op, limit) => {
                    item.metric(*metric).is_some_and(|v| match op {
                        Op::Gt => v > *limit,
                        Op::Ge => v >= *limit,
                        Op::Lt => v < *limit,
                        Op::Le => v <= *limit,
                        Op::Eq => (v - limit).abs() < f64::EPSILON,
                    })
                }
            };
            if !ok {
                return None;
            }
        }
        match &self.fuzzy {
            None => Some(0),
            Some(pattern) => {
                scratch.text.clear();
                item.haystack(&mut scratch.text);
                let haystack = Utf32Str::new(&scratch.text, &mut scratch.chars);
                pattern.score(haystack, &mut scratch.matcher)
            }
        }
    }
}

/// Buffers reused while filtering many rows.
pub struct Scratch {
    text: String,
    chars: Vec<char>,
    matcher: Matcher,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            text: String::new(),
            chars: Vec::new(),
            matcher: Matcher::new(Config::DEFAULT),
        }
    }
}

/// `cpu>50%`, `mem>=1.5G`, `conns<10` → a threshold term; other tokens → `None`.
fn threshold(token: &str) -> Result<Option<Term>, QueryError> {
    let Some(at) = token.find(['>', '<', '=']) else {
        return Ok(None);
    };
    let name = &token[..at];
    let comparison = token[at..].starts_with(['>', '<']);
    let metric = match name {
        "cpu" => Metric::Cpu,
        "mem" | "memory" | "rss" => Metric::Memory,
        "conns" | "connections" => Metric::Connections,
        "in" | "rx" => Metric::In,
        "out" | "tx" => Metric::Out,
        // `label:app=web`, `tier=front`: words, not thresholds.
        _ if name.contains(':') || !comparison => return Ok(None),
        _ => {
            return Err(QueryError(format!(
                "unknown metric {name:?} in {token:?}: use cpu, mem, conns, in or out"
            )));
        }
    };
    let rest = &token[at..];
    let (op, value) = if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (Op::Gt, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (Op::Eq, v.strip_prefix('=').unwrap_or(v))
    } else {
        return Ok(None);
    };
    let value = parse_amount(value).ok_or_else(|| {
        QueryError(format!(
            "{token:?}: {value:?} is not a number (try 50, 50%, 512M or 1.5G)"
        ))
    })?;
    Ok(Some(Term::Threshold(metric, op, value)))
}

/// `50`, `50%`, `512K`, `1.5G`, `2Gi` → a number (suffixes are powers of 1024).
fn parse_amount(s: &str) -> Option<f64> {
    let s = s
        .trim_end_matches('%')
        .trim_end_matches('i')
        .trim_end_matches(['B', 'b']);
    let (num, scale) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1024.0),
        'm' | 'M' => (&s[..s.len() - 1], 1024.0 * 1024.0),
        'g' | 'G' => (&s[..s.len() - 1], 1024.0 * 1024.0 * 1024.0),
        't' | 'T' => (&s[..s.len() - 1], 1024.0_f64.powi(4)),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item {
        kind: &'static str,
        name: &'static str,
        labels: Vec<(&'static str, &'static str)>,
        ns: &'static str,
        cpu: f64,
        mem: f64,
    }

    impl Filterable for Item {
        fn kind(&self) -> &'static str {
            self.kind
        }
        fn labels(&self) -> Vec<(&str, &str)> {
            self.labels.clone()
        }
        fn namespace(&self) -> &str {
            self.ns
        }
        fn hostname(&self) -> &str {
            "node-1"
        }
        fn metric(&self, name: Metric) -> Option<f64> {
            match name {
                Metric::Cpu => Some(self.cpu),
                Metric::Memory => Some(self.mem),
                _ => None,
            }
        }
        fn haystack(&self, out: &mut String) {
            out.push_str(self.name);
            for (k, v) in &self.labels {
                out.push(' ');
                out.push_str(k);
                out.push('=');
                out.push_str(v);
            }
        }
    }

    fn web() -> Item {
        Item {
            kind: "container",
            name: "payments-web-7f9",
            labels: vec![("app", "web"), ("tier", "front")],
            ns: "payments",
            cpu: 62.0,
            mem: 300.0 * 1024.0 * 1024.0,
        }
    }

    fn check(query: &str, item: &Item) -> bool {
        Query::parse(query)
            .unwrap()
            .matches(item, &mut Scratch::default())
    }

    #[test]
    fn fuzzy_words_match_names_and_labels() {
        assert!(check("", &web()));
        assert!(check("pay web", &web()));
        assert!(check("pmtweb", &web()), "fuzzy, not substring");
        assert!(check("tier=front", &web()));
        assert!(!check("redis", &web()));
    }

    #[test]
    fn exact_terms_and_thresholds() {
        assert!(check(
            "kind:container label:app=web ns:payments host:node",
            &web()
        ));
        assert!(check("type:cont label:tier", &web()));
        assert!(!check("kind:process", &web()));
        assert!(!check("label:app=db", &web()));
        assert!(check("cpu>50%", &web()));
        assert!(!check("cpu>70", &web()));
        assert!(check("mem>256M mem<=1G", &web()));
        assert!(!check("mem>1G", &web()));
        assert!(!check("conns>1", &web()), "no such metric: no match");
    }

    #[test]
    fn bad_thresholds_say_what_to_write() {
        let err = Query::parse("cpu>lots").unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
        let err = Query::parse("disk>5").unwrap_err();
        assert!(err.to_string().contains("use cpu, mem"), "{err}");
        assert!(Query::parse("label:a=b").is_ok());
    }
}
