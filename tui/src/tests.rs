//! State and event handling without a terminal: what each key and each message from the
//! master does to `App`.
use std::time::{Duration, Instant};

use orca_proto::{operator::v1 as opb, topology::v1 as pb};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

use crate::{
    app::{AgentAction, App, Command, LaunchRequest, LinkState, Mode},
    model::topology::TopoView,
    saved::SavedFilters,
    synthetic,
    views::{Item, Scope, Tab},
};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, keys: &str) -> Option<Command> {
    let mut last = None;
    for c in keys.chars() {
        last = app.on_key(key(KeyCode::Char(c)));
        app.prepare();
    }
    last
}

fn loaded(nodes: usize) -> App {
    let mut app = App::new("127.0.0.1:7070", SavedFilters::default());
    let now = Instant::now();
    for (view, delta) in synthetic::snapshots(nodes, 8) {
        app.on_topology(view, delta, now);
    }
    app.on_cluster(synthetic::cluster(3, 2, 12), now);
    app.on_link(LinkState::Connected);
    app.prepare();
    app.frame_drawn(Instant::now());
    app
}

fn selected_name(app: &App) -> String {
    app.selected().map(|i| i.name()).unwrap_or_default()
}

#[test]
fn tabs_switch_by_number_and_tab_key_without_reloading() {
    let mut app = loaded(300);
    assert_eq!(app.tab, Tab::Hosts);
    assert_eq!(app.state().rows().keys.len(), 3);
    press(&mut app, "3");
    assert_eq!(app.tab, Tab::Processes);
    assert_eq!(app.state().rows().keys.len(), 3 * 90);
    app.on_key(key(KeyCode::Tab));
    app.prepare();
    assert_eq!(app.tab, Tab::Connections);
    app.on_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_eq!(app.tab, Tab::Processes);
    press(&mut app, "7");
    assert_eq!(app.tab, Tab::Tasks);
    assert_eq!(app.state().rows().keys.len(), 12);
}

#[test]
fn drill_down_host_to_containers_to_processes_to_connections_and_back_up() {
    let mut app = loaded(300);
    assert_eq!(selected_name(&app), "node-000");
    app.on_key(key(KeyCode::Enter));
    app.prepare();
    assert_eq!(app.tab, Tab::Containers);
    assert_eq!(app.state().scope(), &Scope::Host("node-000".into()));
    assert_eq!(
        app.state().rows().keys.len(),
        synthetic::CONTAINERS_PER_HOST
    );

    app.on_key(key(KeyCode::Enter));
    app.prepare();
    assert_eq!(app.tab, Tab::Processes);
    assert_eq!(
        app.state().rows().keys.len(),
        synthetic::PROCESSES_PER_CONTAINER
    );
    let Some(Item::Node(first)) = app.selected() else {
        panic!("a process is selected")
    };
    let container = first.process().unwrap().container_id.clone();
    assert!(app.state().rows().keys.iter().all(|k| {
        matches!(app.model.topology.view(TopoView::Processes).nodes[k].process(),
            Some(p) if p.container_id == container)
    }));

    app.on_key(key(KeyCode::Enter));
    app.prepare();
    assert_eq!(app.tab, Tab::Connections);
    assert_eq!(app.state().rows().keys.len(), 1);
    assert_eq!(app.state().scopes.len(), 3, "host › container › process");

    for back in [Tab::Processes, Tab::Containers, Tab::Hosts] {
        app.on_key(key(KeyCode::Esc));
        app.prepare();
        assert_eq!(app.tab, back);
    }
    assert!(app.state().scopes.is_empty());
    // Back up at the top does nothing.
    app.on_key(key(KeyCode::Backspace));
    assert_eq!(app.tab, Tab::Hosts);
}

#[test]
fn filter_narrows_live_and_esc_restores() {
    let mut app = loaded(300);
    press(&mut app, "2/");
    assert!(matches!(app.mode, Mode::Filter { .. }));
    press(&mut app, "ns:payments label:app=web");
    let keys = app.state().rows().keys.clone();
    assert!(!keys.is_empty());
    for k in &keys {
        let c = app.model.topology.view(TopoView::Containers).nodes[k]
            .container()
            .unwrap();
        assert_eq!(c.namespace, "payments");
        assert_eq!(c.labels["app"], "web");
    }
    app.on_key(key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.state().query.text(), "ns:payments label:app=web");

    // A bad threshold keeps the last good query and says why; Esc restores the one before.
    press(&mut app, "/");
    press(&mut app, " cpu>lots");
    match &app.mode {
        Mode::Filter { error: Some(e), .. } => assert!(e.contains("not a number"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(app.state().query.text(), "ns:payments label:app=web cpu");
    app.on_key(key(KeyCode::Enter));
    assert!(
        matches!(app.mode, Mode::Filter { .. }),
        "Enter with an error stays"
    );
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.state().query.text(), "ns:payments label:app=web");

    // Esc in normal mode clears the filter first.
    app.on_key(key(KeyCode::Esc));
    app.prepare();
    assert!(app.state().query.is_empty());
    assert_eq!(app.state().rows().keys.len(), 3 * 9);
}

#[test]
fn fuzzy_filter_ranks_best_matches_first() {
    let mut app = loaded(300);
    press(&mut app, "2/");
    press(&mut app, "cache-1");
    let first = selected_name(&app);
    assert!(first.starts_with("cache-1"), "{first}");
}

#[test]
fn sort_cycles_columns_and_reverses() {
    let mut app = loaded(300);
    press(&mut app, "1s");
    assert_eq!(app.state().sort.column, Some(0));
    press(&mut app, "s"); // CPU, largest first
    let cpu = |app: &App| -> Vec<f64> {
        app.state()
            .rows()
            .keys
            .iter()
            .map(|k| app.model.topology.view(TopoView::Hosts).nodes[k].cpu_percent())
            .collect()
    };
    let c = cpu(&app);
    assert!(c.windows(2).all(|w| w[0] >= w[1]), "{c:?}");
    press(&mut app, "S");
    let c = cpu(&app);
    assert!(c.windows(2).all(|w| w[0] <= w[1]), "{c:?}");
    // From the second column, as many presses as there are columns left: natural order.
    for _ in 1..Tab::Hosts.columns().len() {
        press(&mut app, "s");
    }
    assert_eq!(app.state().sort.column, None, "back to the natural order");
}

#[test]
fn processes_are_a_tree_until_sorted_or_filtered() {
    let mut app = loaded(100);
    press(&mut app, "3");
    let rows = app.state().rows();
    assert_eq!(rows.tree.len(), rows.keys.len());
    let prefixes: Vec<String> = (0..rows.keys.len()).map(|i| rows.tree_prefix(i)).collect();
    // Worker processes sit under their container's main process.
    assert_eq!(prefixes[0], "");
    assert_eq!(prefixes[1], "├─");
    assert_eq!(prefixes[9], "└─");
    assert_eq!(prefixes[10], "", "the next container's main process");
    press(&mut app, "s");
    assert!(app.state().rows().tree.is_empty());
}

#[test]
fn selection_stays_on_the_same_item_when_rows_move() {
    let mut app = loaded(300);
    press(&mut app, "3");
    press(&mut app, "jjj");
    let before = app.selected_key().unwrap().to_owned();
    // A delta removes the first process: the selection follows its item.
    let first = app.state().rows().keys[0].clone();
    app.on_topology(
        TopoView::Processes,
        pb::TopologyDelta {
            seq: 2,
            removed_nodes: vec![first],
            ..Default::default()
        },
        Instant::now(),
    );
    app.prepare();
    assert_eq!(app.selected_key().unwrap(), before);
}

#[test]
fn kill_asks_first_and_only_for_live_tasks() {
    let mut app = loaded(100);
    press(&mut app, "1");
    assert_eq!(press(&mut app, "x"), None);
    assert!(app.message.as_ref().unwrap().0.contains("Tasks tab"));

    press(&mut app, "7");
    assert_eq!(press(&mut app, "x"), None);
    let Mode::Confirm { prompt, .. } = &app.mode else {
        panic!("a confirmation, got {:?}", app.mode)
    };
    assert!(prompt.starts_with("Kill task"), "{prompt}");
    assert_eq!(press(&mut app, "n"), None);
    assert_eq!(app.mode, Mode::Normal);
    press(&mut app, "x");
    let command = press(&mut app, "y");
    let Some(Item::Task(t)) = app.selected() else {
        panic!()
    };
    assert_eq!(
        command,
        Some(Command::KillTask {
            framework_id: t.framework_id.clone(),
            task_id: t.id.clone()
        })
    );
}

#[test]
fn launch_form_checks_its_fields() {
    let mut app = loaded(100);
    press(&mut app, "L");
    assert!(matches!(app.mode, Mode::Launch(_)));
    // No command yet.
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let Mode::Launch(form) = &app.mode else {
        panic!()
    };
    assert!(form.error.as_ref().unwrap().contains("command is required"));
    app.on_key(key(KeyCode::Tab));
    press(&mut app, "sleep 60");
    app.on_key(key(KeyCode::Tab));
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    press(&mut app, "-1");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let Mode::Launch(form) = &app.mode else {
        panic!()
    };
    assert!(form.error.as_ref().unwrap().contains("CPUs"), "{form:?}");
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    press(&mut app, "0.5");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Command::Launch(LaunchRequest {
            name: "sleep".into(),
            command: "sleep 60".into(),
            cpus: 0.5,
            mem_mb: 64.0,
            role: "*".into(),
        }))
    );
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn esc_then_key_sent_together_is_two_keys() {
    let mut app = loaded(100);
    press(&mut app, "/web");
    // Esc + q arriving as Alt-q: cancel the filter, then quit.
    let command = app.on_key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::ALT));
    assert_eq!(command, Some(Command::Quit));
    assert!(app.state().query.is_empty());
}

#[test]
fn master_down_is_shown_and_data_reloads_on_reconnect() {
    let mut app = loaded(100);
    app.on_link(LinkState::Down {
        reason: "connection refused".into(),
        retry_at: Instant::now() + Duration::from_secs(1),
    });
    assert!(!app.model.topology.view(TopoView::Hosts).loaded);
    // What was known stays on screen until the new snapshot replaces it.
    assert_eq!(app.state().rows().keys.len(), 1);
    app.on_link(LinkState::Connected);
    for (view, delta) in synthetic::snapshots(300, 1) {
        app.on_topology(view, delta, Instant::now());
    }
    app.prepare();
    assert_eq!(app.state().rows().keys.len(), 3);
}

#[test]
fn latency_is_measured_from_arrival_to_the_frame() {
    let mut app = loaded(100);
    let arrived = Instant::now();
    app.on_topology(
        TopoView::Processes,
        synthetic::process_update(0, 2, 99.0),
        arrived,
    );
    app.frame_drawn(arrived + Duration::from_millis(7));
    assert_eq!(app.last_latency, Some(Duration::from_millis(7)));
    // Nothing new: no sample.
    let samples = app.latency.len();
    app.frame_drawn(arrived + Duration::from_millis(50));
    assert_eq!(app.latency.len(), samples);
}

#[test]
fn mouse_click_selects_and_wheel_scrolls() {
    let mut app = loaded(1000);
    press(&mut app, "2");
    app.table_top = 4;
    app.on_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 3,
        row: 7,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(app.state().selected, 3);
    app.on_mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 3,
        row: 7,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(app.state().selected, 6);
}

#[test]
fn export_gives_the_selected_node_as_json_with_its_series() {
    let mut app = loaded(100);
    let Some(Command::Export { json, .. }) = press(&mut app, "e") else {
        panic!("an export")
    };
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        value["series"]["cpuPercent"].as_array().unwrap().len(),
        1,
        "latest only"
    );

    // Opening the details fetches the hour; the export then carries it.
    press(&mut app, "d");
    let node = app
        .take_series_request()
        .expect("the details ask for the history");
    assert_eq!(node, "host:node-000");
    app.on_series(synthetic::history(&node, 240), Instant::now());
    let Some(Command::Export { id, json }) = press(&mut app, "e") else {
        panic!("an export")
    };
    assert_eq!(id, "host:node-000");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["node"]["host"]["hostname"], "node-000");
    assert_eq!(value["series"]["cpuPercent"].as_array().unwrap().len(), 240);
}

#[test]
fn saved_filters_apply_to_their_tab() {
    let mut app = loaded(300);
    press(&mut app, "2/");
    press(&mut app, "ns:ops");
    app.on_key(key(KeyCode::Enter));
    assert_eq!(press(&mut app, "F"), Some(Command::SaveFilters));
    app.on_key(key(KeyCode::Esc));
    press(&mut app, "1f");
    assert!(matches!(app.mode, Mode::SavedFilters { selected: 0 }));
    app.on_key(key(KeyCode::Enter));
    app.prepare();
    assert_eq!(app.tab, Tab::Containers);
    assert_eq!(app.state().query.text(), "ns:ops");
}

#[test]
fn closed_connections_linger_then_go() {
    let mut app = loaded(100);
    let id = app
        .model
        .topology
        .view(TopoView::Connections)
        .connections
        .keys()
        .next()
        .unwrap()
        .clone();
    let open = &app.model.topology.view(TopoView::Connections).connections[&id].conn;
    let closed = pb::TopologyConnection {
        connection: Some(pb::Connection {
            id: open.id.clone(),
            local: Some(pb::Endpoint::new(open.local)),
            remote: open.remote.map(pb::Endpoint::new),
            state: pb::ConnectionState::Closed as i32,
            ..Default::default()
        }),
        hostname: open.hostname.clone(),
        ..Default::default()
    };
    let now = Instant::now();
    app.on_topology(
        TopoView::Connections,
        pb::TopologyDelta {
            seq: 2,
            upserted_connections: vec![closed],
            ..Default::default()
        },
        now,
    );
    app.on_topology(
        TopoView::Connections,
        pb::TopologyDelta {
            seq: 3,
            removed_connections: vec![id.clone()],
            ..Default::default()
        },
        now,
    );
    press(&mut app, "4");
    assert!(app.state().rows().keys.contains(&id));
    app.on_tick(now + Duration::from_secs(5));
    app.prepare();
    assert!(!app.state().rows().keys.contains(&id));
}

#[test]
fn a_value_change_reorders_rows_sorted_by_that_value_at_once() {
    let mut app = loaded(300);
    press(&mut app, "3ssss");
    assert_eq!(Tab::Processes.columns()[3].title, "CPU");
    assert_eq!(app.state().sort.column, Some(3));
    assert_ne!(app.state().rows().keys[0], "process:node-000:1000");
    app.on_topology(
        TopoView::Processes,
        synthetic::process_update(0, 2, 100.0),
        Instant::now(),
    );
    app.prepare();
    assert_eq!(app.state().rows().keys[0], "process:node-000:1000");

    // In tree order a value change keeps the rows (and their order) as they are.
    press(&mut app, "ssssss");
    assert_eq!(app.state().sort.column, None);
    let before = app.state().rows().keys.clone();
    app.on_topology(
        TopoView::Processes,
        synthetic::process_update(1, 3, 0.0),
        Instant::now(),
    );
    app.prepare();
    assert_eq!(app.state().rows().keys, before);
}

#[test]
fn container_actions_offer_what_the_state_allows_and_ask_first() {
    use orca_proto::cluster::v1::ContainerAction as A;
    let mut app = loaded(100);
    press(&mut app, "2a");
    let Mode::ContainerMenu {
        actions, target, ..
    } = &app.mode
    else {
        panic!("the container menu, got {:?}", app.mode)
    };
    assert_eq!(actions, &[A::Stop, A::Restart, A::Pause, A::Remove]);
    assert_eq!(
        (target.hostname.as_str(), target.name.as_str()),
        ("node-000", "api-0-1")
    );
    press(&mut app, "j");
    app.on_key(key(KeyCode::Enter));
    let Mode::Confirm { prompt, .. } = &app.mode else {
        panic!("a confirmation, got {:?}", app.mode)
    };
    assert_eq!(prompt, "Restart container api-0-1 on node-000? (y/n)");
    let Some(Command::ContainerAction { target, action }) = press(&mut app, "y") else {
        panic!("a container action")
    };
    assert_eq!(action, A::Restart);
    assert_eq!(target.id, "00000001c0ffee");

    // An exited container can only be started or removed; Esc leaves the menu.
    press(&mut app, "/web-0-0");
    app.on_key(key(KeyCode::Enter));
    press(&mut app, "a");
    let Mode::ContainerMenu { actions, .. } = &app.mode else {
        panic!()
    };
    assert_eq!(actions, &[A::Start, A::Remove]);
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.mode, Mode::Normal);

    // Not a container.
    press(&mut app, "1a");
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.message.as_ref().unwrap().0.contains("Containers tab"));
}

#[test]
fn log_view_takes_only_its_stream_and_closes() {
    let mut app = loaded(100);
    press(&mut app, "2");
    let Some(Command::OpenLogs { target, stream }) = press(&mut app, "o") else {
        panic!("logs opened")
    };
    assert_eq!(target.name, "api-0-1");
    assert_eq!(app.mode, Mode::Logs);
    app.on_log(stream, b"hello\nwor");
    app.on_log(stream + 99, b"from an older stream\n");
    app.on_log(stream, b"ld\n");
    let view = app.logs.as_ref().unwrap();
    assert_eq!(view.lines().collect::<Vec<_>>(), ["hello", "world"]);
    app.on_log_end(stream, Some("the container is gone".into()));
    assert_eq!(
        app.logs.as_ref().unwrap().ended.as_deref(),
        Some("the container is gone")
    );
    // Keys go to the view (q does not quit orca), Esc closes it.
    assert_eq!(press(&mut app, "q"), Some(Command::CloseLogs));
    assert!(app.logs.is_none());
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn an_agent_is_drained_and_reactivated_after_confirmation() {
    let mut app = loaded(100);
    press(&mut app, "7");
    assert_eq!(press(&mut app, "D"), None);
    assert!(app.message.as_ref().unwrap().0.contains("Agents tab"));

    press(&mut app, "5");
    let Some(Item::Agent(a)) = app.selected() else {
        panic!("an agent is selected")
    };
    let (agent_id, hostname) = (a.id.clone(), a.hostname.clone());
    // An active agent has nothing to reactivate.
    assert_eq!(press(&mut app, "R"), None);
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.message.as_ref().unwrap().0.contains("is active"));

    assert_eq!(press(&mut app, "D"), None);
    let Mode::Confirm { prompt, .. } = &app.mode else {
        panic!("a confirmation, got {:?}", app.mode)
    };
    assert!(
        prompt.starts_with(&format!("Drain agent {hostname}")),
        "{prompt}"
    );
    assert_eq!(press(&mut app, "n"), None, "declined");
    assert_eq!(app.mode, Mode::Normal);
    press(&mut app, "D");
    assert_eq!(
        press(&mut app, "y"),
        Some(Command::AgentAction {
            agent_id: agent_id.clone(),
            hostname: hostname.clone(),
            action: AgentAction::Drain,
        })
    );

    // The master says it drains: a second drain is refused here, and so is a reactivation
    // until it is drained.
    let draining = |state: opb::AgentDrainState| opb::ClusterDelta {
        upserted_agents: vec![opb::Agent {
            id: agent_id.clone(),
            hostname: hostname.clone(),
            state: opb::AgentState::Active as i32,
            deactivated: true,
            drain_state: state as i32,
            drain_tasks_left: 3,
            ..Default::default()
        }],
        ..Default::default()
    };
    app.on_cluster(draining(opb::AgentDrainState::Draining), Instant::now());
    app.prepare();
    assert_eq!(press(&mut app, "D"), None);
    assert!(
        app.message
            .as_ref()
            .unwrap()
            .0
            .contains("already draining (3 tasks left)")
    );
    assert_eq!(press(&mut app, "R"), None);
    assert!(app.message.as_ref().unwrap().0.contains("still draining"));
    app.on_cluster(draining(opb::AgentDrainState::Drained), Instant::now());
    app.prepare();
    press(&mut app, "R");
    assert_eq!(
        press(&mut app, "y"),
        Some(Command::AgentAction {
            agent_id,
            hostname,
            action: AgentAction::Reactivate,
        })
    );
}
