//! Resources as Mesos models them: named scalars (cpus, mem, disk, gpus, any custom name such as
//! `net_bw`) and ranges (ports), each either unreserved or statically reserved for one role.
//!
//! Scalars are fixed-point with three decimal places, as Mesos rounds them, so `0.1 + 0.2` is
//! exactly `0.3` and repeated add/subtract over millions of offers never drifts.
pub mod proto;

use std::{
    cmp::Ordering,
    collections::HashSet,
    fmt,
    sync::{Arc, Mutex, OnceLock},
};

/// Resources whose `reservation` is `None` may go to any role; Mesos writes that role as `*`.
pub const UNRESERVED_ROLE: &str = "*";

/// A fixed-point scalar in thousandths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scalar(pub i64);

impl Scalar {
    pub const ZERO: Scalar = Scalar(0);

    /// Rounds to the nearest thousandth, as Mesos does. Negative, NaN and infinite values are
    /// rejected by the parsers before they get here.
    pub fn from_f64(value: f64) -> Scalar {
        Scalar((value * 1000.0).round() as i64)
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1000, (self.0 % 1000).abs());
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:03}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// Sorted, non-overlapping, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn new(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut list: Vec<(u64, u64)> = ranges.into_iter().filter(|(b, e)| b <= e).collect();
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for (begin, end) in list {
            match merged.last_mut() {
                Some(last) if begin <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((begin, end)),
            }
        }
        Ranges(merged)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many values the ranges hold.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(b, e)| e - b + 1).sum()
    }

    pub fn contains(&self, other: &Ranges) -> bool {
        other
            .0
            .iter()
            .all(|&(b, e)| self.0.iter().any(|&(sb, se)| sb <= b && e <= se))
    }

    pub fn add(&mut self, other: &Ranges) {
        *self = Ranges::new(self.0.iter().chain(other.0.iter()).copied());
    }

    /// Removes every value of `other` (values not present are ignored).
    pub fn subtract(&mut self, other: &Ranges) {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(mut begin, end) in &self.0 {
            let mut keep = true;
            for &(ob, oe) in &other.0 {
                if oe < begin || ob > end {
                    continue;
                }
                if ob > begin {
                    out.push((begin, ob - 1));
                }
                if oe >= end {
                    keep = false;
                    break;
                }
                begin = oe + 1;
            }
            if keep {
                out.push((begin, end));
            }
        }
        self.0 = out;
    }

    /// The first `count` values, lowest first.
    pub fn take(&self, mut count: u64) -> Ranges {
        let mut out = Vec::new();
        for &(b, e) in &self.0 {
            if count == 0 {
                break;
            }
            let n = (e - b + 1).min(count);
            out.push((b, b + n - 1));
            count -= n;
        }
        Ranges(out)
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (b, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{b}-{e}")?;
        }
        f.write_str("]")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    Scalar(Scalar),
    Ranges(Ranges),
}

impl Value {
    fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(s) => s.0 <= 0,
            Value::Ranges(r) => r.is_empty(),
        }
    }
}

/// One named quantity, unreserved or reserved for a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    pub name: Arc<str>,
    pub value: Value,
    /// The role this resource is statically reserved for; `None` is unreserved (`*`).
    pub reservation: Option<Arc<str>>,
}

impl Resource {
    pub fn scalar(name: &str, value: f64) -> Self {
        Resource {
            name: intern(name),
            value: Value::Scalar(Scalar::from_f64(value)),
            reservation: None,
        }
    }

    pub fn ranges(name: &str, ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        Resource {
            name: intern(name),
            value: Value::Ranges(Ranges::new(ranges)),
            reservation: None,
        }
    }

    pub fn reserved_for(mut self, role: &str) -> Self {
        self.reservation = Some(intern(role));
        self
    }

    /// The order entries are kept in inside [`Resources`]: by name, reservation, kind. Names
    /// usually share one allocation, so the pointer comparison settles most calls.
    fn slot_cmp(&self, other: &Resource) -> Ordering {
        fn by_str(a: &Arc<str>, b: &Arc<str>) -> Ordering {
            if Arc::ptr_eq(a, b) {
                Ordering::Equal
            } else {
                a.cmp(b)
            }
        }
        let kind = |v: &Value| matches!(v, Value::Ranges(_)) as u8;
        by_str(&self.name, &other.name)
            .then_with(|| match (&self.reservation, &other.reservation) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => by_str(a, b),
            })
            .then_with(|| kind(&self.value).cmp(&kind(&other.value)))
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(role) = &self.reservation {
            write!(f, "({role})")?;
        }
        match &self.value {
            Value::Scalar(s) => write!(f, ":{s}"),
            Value::Ranges(r) => write!(f, ":{r}"),
        }
    }
}

/// Why a resource string or JSON resource was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error(
        "resource `{0}` is not `name:value`, `name:[begin-end,...]` or `name(role):value`; \
         e.g. `cpus:4;mem:4096;ports:[31000-32000]`"
    )]
    Syntax(String),
    #[error("resource `{name}` has an invalid value `{value}`: {why}")]
    Value {
        name: String,
        value: String,
        why: &'static str,
    },
}

/// A bag of resources: at most one entry per (name, reservation, kind), kept sorted in that
/// order (so equality is structural and `contains` is one merge pass); never an empty entry.
///
/// Copy-on-write: a clone shares the entries until one side changes, so an offer, the
/// allocator's record of it and the agent's free pool can hold the same bag for the price of a
/// reference count (the allocator's hot path clones every offer twice).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resources(Arc<Vec<Resource>>);

impl Default for Resources {
    fn default() -> Self {
        Resources::new()
    }
}

impl Resources {
    /// An empty bag (shares one allocation with every other empty bag).
    pub fn new() -> Self {
        static EMPTY: OnceLock<Arc<Vec<Resource>>> = OnceLock::new();
        Resources(EMPTY.get_or_init(|| Arc::new(Vec::new())).clone())
    }

    fn entries_mut(&mut self) -> &mut Vec<Resource> {
        Arc::make_mut(&mut self.0)
    }

    /// Parses Mesos's text form: `cpus:4;mem:4096;disk(ops):100;ports:[31000-32000,33000-33100]`.
    pub fn parse(text: &str) -> Result<Self, ResourceError> {
        let mut out = Resources::new();
        for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (head, value) = item
                .split_once(':')
                .ok_or_else(|| ResourceError::Syntax(item.to_owned()))?;
            let (name, reservation) = match head.split_once('(') {
                Some((name, rest)) => {
                    let role = rest
                        .strip_suffix(')')
                        .ok_or_else(|| ResourceError::Syntax(item.to_owned()))?;
                    let role = (role != UNRESERVED_ROLE).then(|| intern(role));
                    (name.trim(), role)
                }
                None => (head.trim(), None),
            };
            if name.is_empty() {
                return Err(ResourceError::Syntax(item.to_owned()));
            }
            let value = value.trim();
            let value = if let Some(inner) = value.strip_prefix('[') {
                let inner = inner
                    .strip_suffix(']')
                    .ok_or_else(|| ResourceError::Value {
                        name: name.to_owned(),
                        value: value.to_owned(),
                        why: "a range list must end with `]`",
                    })?;
                let mut ranges = Vec::new();
                for part in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let bad = || ResourceError::Value {
                        name: name.to_owned(),
                        value: part.to_owned(),
                        why: "a range is `begin-end` with begin <= end",
                    };
                    let (b, e) = part.split_once('-').ok_or_else(bad)?;
                    let b: u64 = b.trim().parse().map_err(|_| bad())?;
                    let e: u64 = e.trim().parse().map_err(|_| bad())?;
                    if b > e {
                        return Err(bad());
                    }
                    ranges.push((b, e));
                }
                Value::Ranges(Ranges::new(ranges))
            } else {
                Value::Scalar(parse_scalar(name, value)?)
            };
            out.add_resource(Resource {
                name: intern(name),
                value,
                reservation,
            });
        }
        Ok(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.0.iter()
    }

    /// A 64-bit digest of the exact contents (entries are sorted, so equal bags hash equal).
    /// Lets hot paths compare bags without walking both.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = rustc_hash::FxHasher::default();
        self.hash(&mut hasher);
        hasher.finish()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn add_resource(&mut self, resource: Resource) {
        if resource.value.is_empty() {
            return;
        }
        match self.0.binary_search_by(|r| r.slot_cmp(&resource)) {
            Ok(pos) => match (&mut self.entries_mut()[pos].value, &resource.value) {
                (Value::Scalar(a), Value::Scalar(b)) => a.0 += b.0,
                (Value::Ranges(a), Value::Ranges(b)) => a.add(b),
                _ => unreachable!("slot_cmp orders by kind"),
            },
            Err(pos) => self.entries_mut().insert(pos, resource),
        }
    }

    pub fn add(&mut self, other: &Resources) {
        if self.is_empty() {
            // Share instead of copying entry by entry.
            *self = other.clone();
            return;
        }
        for r in other.0.iter() {
            self.add_resource(r.clone());
        }
    }

    /// Removes `other`; what `self` does not hold is ignored (callers check `contains` first
    /// where that matters).
    pub fn subtract(&mut self, other: &Resources) {
        if Arc::ptr_eq(&self.0, &other.0) {
            // Taking back exactly what was handed out (a declined offer): nothing to copy.
            *self = Resources::new();
            return;
        }
        for r in other.0.iter() {
            if let Ok(pos) = self.0.binary_search_by(|s| s.slot_cmp(r)) {
                let entries = self.entries_mut();
                let slot = &mut entries[pos];
                match (&mut slot.value, &r.value) {
                    (Value::Scalar(a), Value::Scalar(b)) => a.0 = (a.0 - b.0).max(0),
                    (Value::Ranges(a), Value::Ranges(b)) => a.subtract(b),
                    _ => unreachable!("slot_cmp orders by kind"),
                }
                if slot.value.is_empty() {
                    entries.remove(pos);
                }
            }
        }
    }

    pub fn plus(&self, other: &Resources) -> Resources {
        let mut out = self.clone();
        out.add(other);
        out
    }

    pub fn minus(&self, other: &Resources) -> Resources {
        let mut out = self.clone();
        out.subtract(other);
        out
    }

    /// Whether every entry of `other` is held here, reservation for reservation.
    pub fn contains(&self, other: &Resources) -> bool {
        // Both sides are sorted: one pass.
        let mut mine = self.0.iter();
        other.0.iter().all(|r| {
            mine.by_ref()
                .find(|s| s.slot_cmp(r) != Ordering::Less)
                .is_some_and(|s| {
                    s.slot_cmp(r) == Ordering::Equal
                        && match (&s.value, &r.value) {
                            (Value::Scalar(a), Value::Scalar(b)) => a.0 >= b.0,
                            (Value::Ranges(a), Value::Ranges(b)) => a.contains(b),
                            _ => false,
                        }
                })
        })
    }

    /// The total of a scalar across reservations.
    pub fn scalar(&self, name: &str) -> Scalar {
        Scalar(
            self.0
                .iter()
                .filter(|r| same_name(&r.name, name))
                .map(|r| match r.value {
                    Value::Scalar(s) => s.0,
                    Value::Ranges(_) => 0,
                })
                .sum(),
        )
    }

    /// Scalar totals by name, ignoring reservations (what shares and quotas are computed on).
    pub fn scalar_totals(&self) -> ScalarMap {
        let mut out = ScalarMap::default();
        for r in self.0.iter() {
            if let Value::Scalar(s) = r.value {
                out.add_shared(&r.name, s);
            }
        }
        out
    }

    pub fn unreserved(&self) -> Resources {
        Resources(Arc::new(
            self.0
                .iter()
                .filter(|r| r.reservation.is_none())
                .cloned()
                .collect(),
        ))
    }

    pub fn reserved_for(&self, role: &str) -> Resources {
        Resources(Arc::new(
            self.0
                .iter()
                .filter(|r| r.reservation.as_deref() == Some(role))
                .cloned()
                .collect(),
        ))
    }

    /// What a framework in `role` may be offered out of this bag: unreserved resources and
    /// those reserved for `role` or one of its ancestors (`eng` reservations serve `eng/web`).
    pub fn usable_by(&self, role: &str) -> Resources {
        Resources(Arc::new(
            self.0
                .iter()
                .filter(|r| match &r.reservation {
                    None => true,
                    Some(res) => is_same_or_ancestor(res, role),
                })
                .cloned()
                .collect(),
        ))
    }

    /// Whether any entry is reserved.
    pub fn has_reservations(&self) -> bool {
        self.0.iter().any(|r| r.reservation.is_some())
    }

    /// Caps unreserved scalar entries named in `caps` at the given amounts (reserved entries and
    /// unnamed kinds pass through untouched).
    pub fn cap_unreserved(&self, caps: &ScalarMap) -> Resources {
        let mut out = Resources::new();
        for r in self.0.iter() {
            match (&r.value, r.reservation.is_none(), caps.get(&r.name)) {
                (Value::Scalar(s), true, Some(cap)) => out.add_resource(Resource {
                    name: r.name.clone(),
                    value: Value::Scalar(Scalar(s.0.min(cap.0))),
                    reservation: None,
                }),
                _ => out.add_resource(r.clone()),
            }
        }
        out
    }
}

fn parse_scalar(name: &str, value: &str) -> Result<Scalar, ResourceError> {
    let number: f64 = value.parse().map_err(|_| ResourceError::Value {
        name: name.to_owned(),
        value: value.to_owned(),
        why: "not a number",
    })?;
    if !number.is_finite() || number < 0.0 {
        return Err(ResourceError::Value {
            name: name.to_owned(),
            value: value.to_owned(),
            why: "a scalar must be a finite number >= 0",
        });
    }
    Ok(Scalar::from_f64(number))
}

/// Distinct names the interner keeps. Real clusters have a few dozen (resource kinds and
/// roles); a caller inventing names cannot grow it past this: later names get their own
/// allocation and compare by content instead of by pointer.
pub const MAX_INTERNED: usize = 4096;

fn interned_names() -> std::sync::MutexGuard<'static, HashSet<Arc<str>>> {
    static NAMES: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One shared allocation per distinct resource or role name, so the allocator's hot loops
/// compare names by pointer; bounded by [`MAX_INTERNED`].
pub fn intern(name: &str) -> Arc<str> {
    let mut names = interned_names();
    if let Some(name) = names.get(name) {
        return name.clone();
    }
    let name: Arc<str> = name.into();
    if names.len() < MAX_INTERNED {
        names.insert(name.clone());
    }
    name
}

/// Name equality that settles on the pointer when both sides share one allocation (resource
/// names and roles are `Arc<str>` shared from the agent's registration and the role tree).
#[inline]
pub fn same_name(a: &str, b: &str) -> bool {
    if a.as_ptr() == b.as_ptr() {
        return a.len() == b.len();
    }
    // Distinct names almost always differ in length or first byte; only then compare bytes.
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// `eng` is an ancestor of `eng/web`; every role is its own "ancestor" here.
pub fn is_same_or_ancestor(ancestor: &str, role: &str) -> bool {
    role == ancestor
        || (role.len() > ancestor.len()
            && role.starts_with(ancestor)
            && role.as_bytes()[ancestor.len()] == b'/')
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromIterator<Resource> for Resources {
    fn from_iter<T: IntoIterator<Item = Resource>>(iter: T) -> Self {
        let mut out = Resources::new();
        for r in iter {
            out.add_resource(r);
        }
        out
    }
}

/// Scalar amounts by name: shares, quotas and headroom are computed on these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScalarMap(Vec<(Arc<str>, Scalar)>);

/// Mesos text form (`cpus:4;mem:8192`), which [`ScalarMap::parse`] reads back.
impl fmt::Display for ScalarMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, amount)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{name}:{amount}")?;
        }
        Ok(())
    }
}

impl ScalarMap {
    pub fn parse(text: &str) -> Result<Self, ResourceError> {
        let resources = Resources::parse(text)?;
        if let Some(r) = resources
            .iter()
            .find(|r| !matches!(r.value, Value::Scalar(_)))
        {
            return Err(ResourceError::Value {
                name: r.name.to_string(),
                value: r.to_string(),
                why: "quotas are scalar amounts only",
            });
        }
        Ok(resources.scalar_totals())
    }

    pub fn get(&self, name: &str) -> Option<Scalar> {
        self.0
            .iter()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, s)| *s)
    }

    /// Like `iter`, with the shared name (for pointer comparisons).
    pub fn entries(&self) -> impl Iterator<Item = (&Arc<str>, Scalar)> {
        self.0.iter().map(|(n, s)| (n, *s))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Scalar)> {
        self.0.iter().map(|(n, s)| (&**n, *s))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|(_, s)| s.0 <= 0)
    }

    pub fn add(&mut self, name: &str, amount: Scalar) {
        match self.0.iter_mut().find(|(n, _)| same_name(n, name)) {
            Some((_, s)) => s.0 += amount.0,
            None => self.0.push((intern(name), amount)),
        }
    }

    /// Lowers `name` to `amount` (inserting it when absent); never raises it.
    pub fn cap_at(&mut self, name: &str, amount: Scalar) {
        match self.0.iter_mut().find(|(n, _)| same_name(n, name)) {
            Some((_, s)) => s.0 = s.0.min(amount.0),
            None => self.0.push((intern(name), amount)),
        }
    }

    /// `add` for a name that is already shared: no lookup in the interner.
    fn add_shared(&mut self, name: &Arc<str>, amount: Scalar) {
        match self.0.iter_mut().find(|(n, _)| same_name(n, name)) {
            Some((_, s)) => s.0 += amount.0,
            None => self.0.push((name.clone(), amount)),
        }
    }

    pub fn add_all(&mut self, other: &ScalarMap) {
        for (n, s) in &other.0 {
            self.add_shared(n, *s);
        }
    }

    pub fn subtract_all(&mut self, other: &ScalarMap) {
        for (n, s) in &other.0 {
            self.add_shared(n, Scalar(-s.0));
        }
    }

    /// `self - other` per name, floored at zero; names only in `other` are dropped.
    pub fn shortfall(&self, other: &ScalarMap) -> ScalarMap {
        ScalarMap(
            self.0
                .iter()
                .map(|(n, s)| {
                    (
                        n.clone(),
                        Scalar((s.0 - other.get(n).unwrap_or_default().0).max(0)),
                    )
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {

    /// Names invented by a caller cannot grow the interner without end; names past the bound
    /// still work, compared by content.
    #[test]
    fn the_interner_is_bounded() {
        let names: Vec<Arc<str>> = (0..MAX_INTERNED + 500)
            .map(|i| intern(&format!("invented-{i}")))
            .collect();
        assert!(interned_names().len() <= MAX_INTERNED);
        let late = format!("invented-{}", MAX_INTERNED + 499);
        assert!(same_name(&names[MAX_INTERNED + 499], &intern(&late)));
        assert!(!same_name(&names[MAX_INTERNED + 499], "invented-0"));
    }

    use super::*;

    #[test]
    fn parses_mesos_text_form_with_reservations_and_ranges() {
        let r =
            Resources::parse("cpus:4.5; mem:4096; cpus(eng):2; ports:[31000-31010, 31005-31020]")
                .unwrap();
        assert_eq!(r.scalar("cpus"), Scalar(6500));
        assert_eq!(r.reserved_for("eng").scalar("cpus"), Scalar(2000));
        assert_eq!(r.unreserved().scalar("cpus"), Scalar(4500));
        let ports = r.iter().find(|x| &*x.name == "ports").unwrap();
        assert_eq!(ports.value, Value::Ranges(Ranges::new([(31000, 31020)])));
    }

    #[test]
    fn bad_text_is_refused_with_the_offending_part_named() {
        assert!(matches!(Resources::parse("cpus"), Err(ResourceError::Syntax(s)) if s == "cpus"));
        assert!(matches!(
            Resources::parse("cpus:-1"),
            Err(ResourceError::Value { name, .. }) if name == "cpus"
        ));
        assert!(Resources::parse("ports:[5-1]").is_err());
        assert!(Resources::parse("mem:NaN").is_err());
    }

    #[test]
    fn fixed_point_arithmetic_does_not_drift() {
        let mut total = Resources::parse("cpus:1").unwrap();
        let tenth = Resources::parse("cpus:0.1").unwrap();
        for _ in 0..10 {
            total.subtract(&tenth);
        }
        assert!(total.is_empty(), "{total}");
        assert_eq!(Scalar(300).to_string(), "0.3");
        assert_eq!(Scalar(2500).to_string(), "2.5");
    }

    #[test]
    fn ranges_subtract_and_take() {
        let mut r = Ranges::new([(1, 10), (20, 30)]);
        r.subtract(&Ranges::new([(5, 6), (10, 22)]));
        assert_eq!(r, Ranges::new([(1, 4), (7, 9), (23, 30)]));
        assert_eq!(r.take(5), Ranges::new([(1, 4), (7, 7)]));
        assert!(r.contains(&Ranges::new([(24, 25)])));
        assert!(!r.contains(&Ranges::new([(9, 10)])));
    }

    #[test]
    fn reservations_serve_their_role_and_its_descendants_only() {
        let r = Resources::parse("cpus:1;cpus(eng):2;cpus(ops):4").unwrap();
        assert_eq!(r.usable_by("eng/web").scalar("cpus"), Scalar(3000));
        assert_eq!(r.usable_by("engineering").scalar("cpus"), Scalar(1000));
        assert!(!r.contains(&Resources::parse("cpus:2").unwrap()));
        assert!(r.contains(&Resources::parse("cpus(eng):2").unwrap()));
    }

    #[test]
    fn clones_share_until_one_side_changes() {
        let offer = Resources::parse("cpus:4;mem:512;ports:[31000-31009]").unwrap();
        let mut held = offer.clone();
        let mut left = offer.clone();
        left.subtract(&Resources::parse("cpus:1;ports:[31000-31000]").unwrap());
        assert_eq!(
            left.to_string(),
            Resources::parse("cpus:3;mem:512;ports:[31001-31009]")
                .unwrap()
                .to_string()
        );
        assert_eq!(held, offer, "a clone is untouched by a change to another");

        // Handing back exactly what was handed out empties the record without a copy.
        held.subtract(&offer);
        assert!(held.is_empty());
        assert_eq!(offer.scalar("cpus"), Scalar(4000));

        // Adding to an empty bag shares; a later change to it leaves the source alone.
        let mut pool = Resources::new();
        pool.add(&offer);
        assert_eq!(pool, offer);
        pool.add(&Resources::parse("cpus:1").unwrap());
        assert_eq!(pool.scalar("cpus"), Scalar(5000));
        assert_eq!(offer.scalar("cpus"), Scalar(4000));
        assert_eq!(Resources::default(), Resources::new());
    }
}
