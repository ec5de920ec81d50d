//! Authorization with `--acls` (Mesos's local authorizer): who may register in a role, run
//! tasks as a user, tear a framework down, drain, deactivate or reactivate an agent. The
//! subject is the principal the caller authenticated as (`None`: unauthenticated, which
//! only ACLs naming ANY principal admit), never one it wrote into a message.
use orca_auth::Action;

use super::State;
use crate::cluster::ApiError;

impl State {
    /// Whether `principal` may do `action` on `object` (`None`: any, as Mesos asks for a
    /// framework without a principal); without ACLs everything is allowed.
    pub(in crate::cluster) fn allowed(
        &self,
        action: Action,
        principal: Option<&str>,
        object: Option<&str>,
    ) -> bool {
        self.config
            .acls
            .as_ref()
            .is_none_or(|acls| acls.allows(action, principal, object))
    }

    /// `allowed`, as the 403 Mesos answers when it is not.
    pub(in crate::cluster) fn authorize(
        &self,
        action: Action,
        principal: Option<&str>,
        object: Option<&str>,
    ) -> Result<(), ApiError> {
        if self.allowed(action, principal, object) {
            return Ok(());
        }
        let object = object.unwrap_or("(none)");
        let who = principal.map_or_else(
            || "an unauthenticated caller".to_owned(),
            |p| format!("principal '{p}'"),
        );
        Err(ApiError::Forbidden(format!(
            "{who} is not authorized to {} '{object}' (the master's --acls, `{}`)",
            match action {
                Action::RegisterFrameworks => "register a framework in role",
                Action::RunTasks => "run tasks as user",
                Action::TeardownFrameworks => "tear down a framework of principal",
                Action::KillTasks => "kill tasks of a framework of principal",
                Action::DrainAgents => "drain agent",
                Action::DeactivateAgents => "deactivate agent",
                Action::ReactivateAgents => "reactivate agent",
                Action::ContainerActions => "act on the containers of host",
            },
            action.key()
        )))
    }

    /// The principal a known framework is registered under (what `teardown_frameworks`
    /// names as `framework_principals`; `Some(None)` when it has none).
    pub(in crate::cluster) fn framework_owner(&self, framework_id: &str) -> Option<Option<String>> {
        Some(match self.frameworks.get(framework_id) {
            Some(f) => f.info.principal.clone(),
            None => self
                .registered_frameworks
                .get(framework_id)?
                .principal
                .clone(),
        })
    }

    /// An agent's hostname (the `agents` object of agent ACLs).
    pub(in crate::cluster) fn agent_hostname(&self, agent_id: &str) -> Option<String> {
        self.agents.get(agent_id).map(|a| a.info.hostname.clone())
    }

    /// The principal a framework authenticated as when it subscribed (`None`: it did not).
    pub(in crate::cluster) fn framework_principal(&self, framework_id: &str) -> Option<&str> {
        self.frameworks
            .get(framework_id)
            .and_then(|f| f.authenticated.as_deref())
    }
}
