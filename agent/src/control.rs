//! The agent's control door (`orca.cluster.v1.AgentControl`): gRPC on a unix socket in the
//! work directory, readable and writable by the agent's user only, like containerd's and
//! Docker's sockets. `orca-agent switch-master` is its client.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use orca_proto::cluster::v1::{
    self as pb,
    agent_control_client::AgentControlClient,
    agent_control_server::{AgentControl, AgentControlServer},
};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status, transport::Channel};

use crate::master_switch::MasterSwitch;

/// The socket's name in the work directory.
pub const SOCKET: &str = "control.sock";

/// The longest a caller may ask to wait for the re-registration.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// The socket of the agent whose work directory is `work_dir`.
pub fn socket_path(work_dir: &Path) -> PathBuf {
    work_dir.join(SOCKET)
}

/// Serves the control door on `socket` until the agent stops. A socket file a previous run
/// left is replaced.
pub async fn serve(socket: PathBuf, switch: MasterSwitch) -> anyhow::Result<()> {
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "cannot replace the control socket {}: {e}",
                socket.display()
            )
        }
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow::anyhow!("cannot restrict {}: {e}", socket.display()))?;
    tracing::info!(socket = %socket.display(), "serving the agent's control door");
    tonic::transport::Server::builder()
        .add_service(AgentControlServer::new(ControlService { switch }))
        .serve_with_incoming(UnixListenerStream::new(listener))
        .await?;
    Ok(())
}

struct ControlService {
    switch: MasterSwitch,
}

impl ControlService {
    fn target(&self) -> pb::MasterTarget {
        let master = self.switch.target().address;
        let registration = self.switch.registration();
        let registered = registration.as_ref().is_some_and(|r| r.master == master);
        pb::MasterTarget {
            master,
            registered,
            agent_id: registration.map(|r| r.agent_id).unwrap_or_default(),
        }
    }
}

#[tonic::async_trait]
impl AgentControl for ControlService {
    async fn get_master(
        &self,
        _: Request<pb::GetMasterRequest>,
    ) -> Result<Response<pb::MasterTarget>, Status> {
        Ok(Response::new(self.target()))
    }

    async fn switch_master(
        &self,
        request: Request<pb::SwitchMasterRequest>,
    ) -> Result<Response<pb::SwitchMasterResponse>, Status> {
        let request = request.into_inner();
        if !request.wait_seconds.is_finite() || request.wait_seconds < 0.0 {
            return Err(Status::invalid_argument(
                "wait_seconds must be a non-negative number of seconds",
            ));
        }
        let started = Instant::now();
        let previous = self
            .switch
            .switch(&request.master)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let master = request.master.trim();
        let wait = Duration::from_secs_f64(request.wait_seconds).min(MAX_WAIT);
        let mut registered_after_seconds = 0.0;
        if !wait.is_zero() {
            match self.switch.wait_registered(master, started, wait).await {
                Some(took) => registered_after_seconds = took.as_secs_f64(),
                None => {
                    return Err(Status::deadline_exceeded(format!(
                        "switched from {previous} to {master}, but the agent did not register \
                         there within {wait:?}; it keeps trying (see its log; is the new master \
                         reachable from this host?)"
                    )));
                }
            }
        }
        Ok(Response::new(pb::SwitchMasterResponse {
            previous,
            now: Some(self.target()),
            registered_after_seconds,
        }))
    }
}

/// A client of the agent's control door on `socket`.
pub async fn connect(socket: &Path) -> anyhow::Result<AgentControlClient<Channel>> {
    let path = socket.to_owned();
    // The URI is required by the API but unused: every connection goes to the socket.
    let channel = tonic::transport::Endpoint::from_static("http://orca-agent.local")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the agent's control socket {}: {e}; is the agent running with \
                 this --work-dir, and are you its user?",
                socket.display()
            )
        })?;
    Ok(AgentControlClient::new(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_control_socket_switches_the_master_and_refuses_a_bad_one() {
        let dir = std::env::temp_dir().join(format!("orca-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let switch = MasterSwitch::new("10.0.0.1:7070", Some(&dir)).unwrap();
        let socket = socket_path(&dir);
        let server = tokio::spawn(serve(socket.clone(), switch.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut client = loop {
            if let Ok(client) = connect(&socket).await {
                break client;
            }
            assert!(
                Instant::now() < deadline,
                "the control socket never answered"
            );
            tokio::task::yield_now().await;
        };
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the agent's user may connect");

        let bad = client
            .switch_master(pb::SwitchMasterRequest {
                master: "not-a-master".into(),
                wait_seconds: 0.0,
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.message().contains("not a master"), "{}", bad.message());

        // Registration with the new master is what the caller waits for.
        let registering = switch.clone();
        tokio::spawn(async move {
            while registering.target().address != "10.0.0.2:7070" {
                tokio::task::yield_now().await;
            }
            registering.registered("10.0.0.2:7070", "S7");
        });
        let reply = client
            .switch_master(pb::SwitchMasterRequest {
                master: "10.0.0.2:7070".into(),
                wait_seconds: 5.0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.previous, "10.0.0.1:7070");
        let now = reply.now.unwrap();
        assert_eq!(
            (now.master.as_str(), now.registered, now.agent_id.as_str()),
            ("10.0.0.2:7070", true, "S7")
        );
        server.abort();
        let _ = std::fs::remove_dir_all(dir);
    }
}
