//! Mesos ACLs and their evaluation (Mesos's local authorizer: `matches` then `allows`).
use std::collections::HashMap;

/// What an ACL names: anything, nothing, or these values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    Any,
    None,
    Some(Vec<String>),
}

impl Entity {
    fn one(value: Option<&str>) -> Self {
        match value {
            Some(v) => Entity::Some(vec![v.to_owned()]),
            None => Entity::Any,
        }
    }

    fn subset_of(request: &[String], acl: &[String]) -> bool {
        request.iter().all(|v| acl.contains(v))
    }

    /// Whether an ACL's entity (`self`) applies to a request's (Mesos's match matrix).
    fn matches(&self, request: &Entity) -> bool {
        match (request, self) {
            (Entity::None, acl) => *acl == Entity::None,
            (Entity::Any, acl) => matches!(acl, Entity::Any | Entity::None),
            (Entity::Some(_), Entity::Any | Entity::None) => true,
            (Entity::Some(r), Entity::Some(a)) => Self::subset_of(r, a),
        }
    }

    /// Whether an applicable ACL entity permits the request's (Mesos's allow matrix).
    fn allows(&self, request: &Entity) -> bool {
        match (request, self) {
            (Entity::None, acl) => *acl == Entity::None,
            (Entity::Any, acl) => *acl == Entity::Any,
            (Entity::Some(_), Entity::Any) => true,
            (Entity::Some(_), Entity::None) => false,
            (Entity::Some(r), Entity::Some(a)) => Self::subset_of(r, a),
        }
    }
}

/// The actions Orca authorizes, with the JSON names of their lists and object fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Subscribe a framework in a role (objects: `roles`).
    RegisterFrameworks,
    /// Launch a task as an OS user (objects: `users`).
    RunTasks,
    /// Tear down a framework registered by a principal (objects: `framework_principals`).
    TeardownFrameworks,
    /// An operator kills a task of a framework registered by a principal (objects:
    /// `framework_principals`). Orca's: Mesos's operator API has no task kill.
    KillTasks,
    /// Drain an agent (objects: `agents`, by hostname).
    DrainAgents,
    /// Deactivate an agent (objects: `agents`).
    DeactivateAgents,
    /// Reactivate an agent (objects: `agents`).
    ReactivateAgents,
    /// Stop, start, pause, restart or remove a container, or read its logs, on a host
    /// (objects: `agents`, by hostname). Orca's: Mesos has no such operator calls.
    ContainerActions,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::RegisterFrameworks,
        Action::RunTasks,
        Action::TeardownFrameworks,
        Action::KillTasks,
        Action::DrainAgents,
        Action::DeactivateAgents,
        Action::ReactivateAgents,
        Action::ContainerActions,
    ];

    /// The ACL list's key in the `--acls` JSON.
    pub fn key(self) -> &'static str {
        match self {
            Action::RegisterFrameworks => "register_frameworks",
            Action::RunTasks => "run_tasks",
            Action::TeardownFrameworks => "teardown_frameworks",
            Action::KillTasks => "kill_tasks",
            Action::DrainAgents => "drain_agents",
            Action::DeactivateAgents => "deactivate_agents",
            Action::ReactivateAgents => "reactivate_agents",
            Action::ContainerActions => "container_actions",
        }
    }

    /// The object field of its rules.
    pub fn object(self) -> &'static str {
        match self {
            Action::RegisterFrameworks => "roles",
            Action::RunTasks => "users",
            Action::TeardownFrameworks | Action::KillTasks => "framework_principals",
            Action::DrainAgents
            | Action::DeactivateAgents
            | Action::ReactivateAgents
            | Action::ContainerActions => "agents",
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    subjects: Entity,
    objects: Entity,
}

/// Why an ACL file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("cannot read the ACLs file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the ACLs are not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the ACLs: {0}")]
    Invalid(String),
}

/// Mesos ACLs: per action, rules tried in order; the first whose subjects and objects match
/// a request decides it. Requests no rule matches are denied unless `"permissive": true`
/// (Mesos permits them by default; Orca, once given ACLs, does not).
#[derive(Debug, Clone, Default)]
pub struct Acls {
    permissive: bool,
    rules: HashMap<Action, Vec<Rule>>,
}

impl Acls {
    /// `--acls`: the JSON itself, or a path to it (`file://` accepted), as Mesos takes it.
    pub fn load(flag: &str) -> Result<Self, AclError> {
        if flag.trim_start().starts_with('{') {
            return Self::parse(flag);
        }
        let path = flag.strip_prefix("file://").unwrap_or(flag);
        let text = std::fs::read_to_string(path).map_err(|source| AclError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, AclError> {
        let json: serde_json::Value = serde_json::from_str(text)?;
        let object = json
            .as_object()
            .ok_or_else(|| AclError::Invalid("expected a JSON object".into()))?;
        let mut acls = Acls::default();
        for (key, value) in object {
            if key == "permissive" {
                acls.permissive = value.as_bool().ok_or_else(|| {
                    AclError::Invalid("`permissive` must be true or false".into())
                })?;
                continue;
            }
            let Some(action) = Action::ALL.into_iter().find(|a| a.key() == key) else {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.key()).collect();
                return Err(AclError::Invalid(format!(
                    "`{key}` is not an ACL Orca enforces (it enforces {}); remove it rather \
                     than have it ignored",
                    known.join(", ")
                )));
            };
            let list = value
                .as_array()
                .ok_or_else(|| AclError::Invalid(format!("`{key}` must be a list of rules")))?;
            let mut rules = Vec::with_capacity(list.len());
            for (i, rule) in list.iter().enumerate() {
                let at = format!("{key}[{i}]");
                let rule = rule
                    .as_object()
                    .ok_or_else(|| AclError::Invalid(format!("{at} must be an object")))?;
                for field in rule.keys() {
                    if field != "principals" && field != action.object() {
                        return Err(AclError::Invalid(format!(
                            "{at} has `{field}`; its fields are `principals` and `{}`",
                            action.object()
                        )));
                    }
                }
                let entity = |field: &str| -> Result<Entity, AclError> {
                    let value = rule
                        .get(field)
                        .ok_or_else(|| AclError::Invalid(format!("{at} has no `{field}`")))?;
                    entity(value).map_err(|e| AclError::Invalid(format!("{at}.{field}: {e}")))
                };
                rules.push(Rule {
                    subjects: entity("principals")?,
                    objects: entity(action.object())?,
                });
            }
            acls.rules.insert(action, rules);
        }
        Ok(acls)
    }

    /// Whether `principal` (`None`: unauthenticated, which Mesos matches as ANY) may do
    /// `action` on `object` (`None`: any object).
    pub fn allows(&self, action: Action, principal: Option<&str>, object: Option<&str>) -> bool {
        let (subject, object) = (Entity::one(principal), Entity::one(object));
        for rule in self.rules.get(&action).into_iter().flatten() {
            if rule.subjects.matches(&subject) && rule.objects.matches(&object) {
                return rule.subjects.allows(&subject) && rule.objects.allows(&object);
            }
        }
        self.permissive
    }
}

/// An entity: `{"type": "ANY"}`, `{"type": "NONE"}`, or `{"values": [...]}` (type SOME).
fn entity(value: &serde_json::Value) -> Result<Entity, String> {
    let object = value
        .as_object()
        .ok_or("expected {\"values\": [...]} or {\"type\": \"ANY\"|\"NONE\"}")?;
    let values = match object.get("values") {
        None => None,
        Some(v) => Some(
            v.as_array()
                .ok_or("`values` must be a list of strings")?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_owned)
                        .ok_or("`values` must be strings")
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    // As Mesos's `ACL.Entity`: the type defaults to SOME; values are ignored for ANY and
    // NONE; SOME with no values names nothing, so it matches no request.
    match object.get("type").and_then(|t| t.as_str()) {
        Some("ANY") => Ok(Entity::Any),
        Some("NONE") => Ok(Entity::None),
        Some("SOME") | None => Ok(Entity::Some(values.unwrap_or_default())),
        Some(other) => Err(format!("type `{other}`: expected SOME, ANY or NONE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACLS: &str = r#"{
        "register_frameworks": [
            {"principals": {"values": ["marathon"]}, "roles": {"values": ["prod", "web"]}},
            {"principals": {"values": ["batch"]}, "roles": {"type": "NONE"}},
            {"principals": {"type": "ANY"}, "roles": {"values": ["dev"]}}
        ],
        "run_tasks": [
            {"principals": {"type": "NONE"}, "users": {"values": ["root"]}, "x": 1},
            {"principals": {"values": ["marathon"]}, "users": {"values": ["app"]}}
        ]
    }"#;

    #[test]
    fn the_first_matching_rule_decides_as_mesos_does() {
        let acls = Acls::parse(&ACLS.replace(", \"x\": 1", "")).unwrap();
        let register =
            |p: Option<&str>, r: &str| acls.allows(Action::RegisterFrameworks, p, Some(r));
        assert!(register(Some("marathon"), "prod"));
        assert!(register(Some("marathon"), "web"));
        // marathon's rule does not match role `dev`; the ANY rule does.
        assert!(register(Some("marathon"), "dev"));
        assert!(
            !register(Some("marathon"), "ops"),
            "no rule matches: not permissive"
        );
        // NONE objects: the rule matches every role and allows none.
        assert!(!register(Some("batch"), "dev"));
        assert!(register(Some("anyone"), "dev"));
        // Unauthenticated requests are ANY: only an ANY rule allows them.
        assert!(register(None, "dev"));
        assert!(!register(None, "prod"));
        // run_tasks: nobody may run as root (NONE principals match everyone, allow nobody);
        // marathon may run as app; other users match no rule.
        assert!(!acls.allows(Action::RunTasks, Some("marathon"), Some("root")));
        assert!(!acls.allows(Action::RunTasks, None, Some("root")));
        assert!(acls.allows(Action::RunTasks, Some("marathon"), Some("app")));
        assert!(!acls.allows(Action::RunTasks, Some("other"), Some("app")));
        assert!(!acls.allows(Action::RunTasks, Some("marathon"), Some("nobody")));
        // Actions the file does not name: denied unless permissive.
        assert!(!acls.allows(Action::TeardownFrameworks, Some("ops"), Some("marathon")));
        let permissive = Acls::parse(r#"{"permissive": true}"#).unwrap();
        assert!(permissive.allows(Action::TeardownFrameworks, Some("ops"), Some("marathon")));
    }

    #[test]
    fn a_typo_or_an_unenforced_acl_is_refused_not_ignored() {
        let e = Acls::parse(ACLS).unwrap_err().to_string();
        assert!(e.contains("run_tasks[0] has `x`"), "{e}");
        let e = Acls::parse(r#"{"view_frameworks": []}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`view_frameworks` is not an ACL Orca enforces"),
            "{e}"
        );
        let e = Acls::parse(
            r#"{"run_tasks": [{"principals": {"type": "ALL"}, "users": {"type": "ANY"}}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("run_tasks[0].principals: type `ALL`"), "{e}");
        // Mesos's leniencies: values ignored for ANY; SOME with no values matches nothing.
        let lenient = Acls::parse(
            r#"{"run_tasks": [
                {"principals": {"values": []}, "users": {"type": "ANY"}},
                {"principals": {"type": "ANY", "values": ["x"]}, "users": {"values": ["app"]}}
            ]}"#,
        )
        .unwrap();
        assert!(lenient.allows(Action::RunTasks, Some("anyone"), Some("app")));
        assert!(!lenient.allows(Action::RunTasks, Some("anyone"), Some("root")));
        assert!(
            Acls::load("/nonexistent/acls.json")
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/acls.json")
        );
    }
}
