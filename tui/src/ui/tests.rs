//! Every view drawn to ratatui's `TestBackend` and compared with its reviewed snapshot
//! (`src/ui/snapshots/`), at the 80x24 an SSH session starts with unless noted.
use std::time::{Duration, Instant};

use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};

use crate::{
    app::{App, LinkState},
    saved::SavedFilters,
    synthetic,
};

fn app(nodes: usize) -> App {
    let mut app = App::new("127.0.0.1:7070", SavedFilters::default());
    let now = Instant::now();
    for (view, delta) in synthetic::snapshots(nodes, 1) {
        app.on_topology(view, delta, now);
    }
    app.on_cluster(synthetic::cluster(3, 4, 14), now);
    app.on_link(LinkState::Connected);
    app
}

fn keys(app: &mut App, keys: &str) {
    for c in keys.chars() {
        let code = match c {
            '\n' => KeyCode::Enter,
            '\t' => KeyCode::Tab,
            c => KeyCode::Char(c),
        };
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
        app.prepare();
    }
}

/// Draws `app` at `width`x`height`; times that change from run to run are left out.
fn draw(app: &mut App, width: u16, height: u16) -> String {
    app.last_update = None;
    app.last_latency = None;
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| super::draw(f, app)).unwrap();
    // The details panel asked for a node's hour: answer as the collector would, draw again.
    if let Some(node) = app.take_series_request() {
        app.on_series(synthetic::history(&node, 240), Instant::now());
        app.last_update = None;
        terminal.draw(|f| super::draw(f, app)).unwrap();
    }
    terminal.backend().to_string()
}

#[test]
fn hosts() {
    let mut app = app(500);
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn containers_of_a_host_after_drilling_down() {
    let mut app = app(500);
    keys(&mut app, "j\n");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn processes_as_a_tree() {
    let mut app = app(200);
    keys(&mut app, "3");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn connections() {
    let mut app = app(200);
    keys(&mut app, "4");
    insta::assert_snapshot!(draw(&mut app, 100, 24));
}

#[test]
fn agents() {
    let mut app = app(200);
    keys(&mut app, "5");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn frameworks() {
    let mut app = app(200);
    keys(&mut app, "6");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn tasks_sorted_by_memory() {
    let mut app = app(200);
    keys(&mut app, "7ssssss");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn details_with_sparklines_under_the_table_at_80_columns() {
    let mut app = app(200);
    keys(&mut app, "d");
    insta::assert_snapshot!(draw(&mut app, 80, 30));
}

#[test]
fn details_beside_the_table_on_a_wide_screen() {
    let mut app = app(200);
    keys(&mut app, "2d");
    insta::assert_snapshot!(draw(&mut app, 160, 36));
}

#[test]
fn neighbourhood_graph() {
    let mut app = app(500);
    keys(&mut app, "n");
    insta::assert_snapshot!(draw(&mut app, 160, 40));
}

#[test]
fn filter_being_typed() {
    let mut app = app(500);
    keys(&mut app, "2/ns:ops cpu>50");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn help() {
    let mut app = app(100);
    keys(&mut app, "?");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn launch_dialog() {
    let mut app = app(100);
    keys(&mut app, "7L\tsleep 60");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn kill_confirmation() {
    let mut app = app(100);
    keys(&mut app, "7x");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn master_unreachable() {
    let mut app = App::new("10.9.9.9:7070", SavedFilters::default());
    app.on_link(LinkState::Down {
        reason: "connection refused".into(),
        retry_at: Instant::now() + Duration::from_millis(2_900),
    });
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn every_view_fits_80_columns_without_panicking_at_tiny_sizes() {
    let mut app = app(300);
    for tab in "1234567".chars() {
        keys(&mut app, &tab.to_string());
        for (w, h) in [(80, 24), (40, 10), (20, 5), (1, 1), (200, 3)] {
            draw(&mut app, w, h);
        }
        keys(&mut app, "d");
        draw(&mut app, 80, 24);
        draw(&mut app, 30, 8);
        keys(&mut app, "d");
    }
}

#[test]
fn details_say_the_history_is_loading_until_it_arrives() {
    let mut app = app(100);
    keys(&mut app, "d");
    app.last_update = None;
    let mut terminal = Terminal::new(TestBackend::new(80, 30)).unwrap();
    terminal.draw(|f| super::draw(f, &mut app)).unwrap();
    let screen = terminal.backend().to_string();
    assert!(screen.contains("loading the last hour"), "{screen}");
    assert_eq!(app.take_series_request().as_deref(), Some("host:node-000"));
    // Asked once per selection.
    terminal.draw(|f| super::draw(f, &mut app)).unwrap();
    assert_eq!(app.take_series_request(), None);
}

#[test]
fn selected_row_is_reversed_and_health_is_coloured() {
    use ratatui::style::{Color, Modifier};
    let mut app = app(100);
    keys(&mut app, "2j");
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| super::draw(f, &mut app)).unwrap();
    let buffer = terminal.backend().buffer();
    // Rows: tabs, breadcrumb, rule, header, then data; the second data row is selected.
    for x in 2..20 {
        assert!(
            buffer[(x, 5)].modifier.contains(Modifier::REVERSED),
            "x={x}"
        );
        assert!(
            !buffer[(x, 4)].modifier.contains(Modifier::REVERSED),
            "x={x}"
        );
    }
    assert!(
        buffer[(8, 0)].modifier.contains(Modifier::REVERSED),
        "the current tab"
    );
    assert!(
        !buffer[(0, 0)].modifier.contains(Modifier::REVERSED),
        "another tab"
    );
    let glyph = |symbol: &str| {
        (4..23)
            .map(|y| &buffer[(0, y)])
            .find(|c| c.symbol() == symbol)
            .unwrap_or_else(|| panic!("a {symbol} row"))
            .fg
    };
    assert_eq!(glyph("●"), Color::Green);
    assert_eq!(glyph("✖"), Color::Red, "the exited container");
}

#[test]
fn container_menu() {
    let mut app = app(100);
    keys(&mut app, "2a");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

#[test]
fn log_view_with_a_search() {
    let mut app = app(100);
    keys(&mut app, "2o");
    let stream = app.logs.as_ref().unwrap().stream;
    for i in 0..40 {
        let line = if i % 9 == 4 {
            format!("{i:02} ERROR upstream timed out\n")
        } else {
            format!("{i:02} GET /health 200\n")
        };
        app.on_log(stream, line.as_bytes());
    }
    keys(&mut app, "/error\n");
    insta::assert_snapshot!(draw(&mut app, 80, 24));
}

/// A listening socket shows its bound address whole at 80 columns, and a long IPv6 peer
/// address keeps its port when its column cuts it.
#[test]
fn listeners_and_long_addresses_keep_their_ports_at_80_columns() {
    use orca_proto::topology::v1 as pb;
    let mut app = App::new("127.0.0.1:7070", SavedFilters::default());
    let connection = |id: &str, local: &str, remote: Option<&str>, state| pb::TopologyConnection {
        connection: Some(pb::Connection {
            id: id.into(),
            local: Some(pb::Endpoint::new(local.parse().unwrap())),
            remote: remote.map(|r| pb::Endpoint::new(r.parse().unwrap())),
            state: state as i32,
            direction: pb::Direction::Outbound as i32,
            pid: 4242,
            comm: "orca".into(),
            ..Default::default()
        }),
        hostname: "node-1".into(),
        peer_name: "db on node-2".into(),
        ..Default::default()
    };
    app.on_topology(
        crate::model::topology::TopoView::Connections,
        pb::TopologyDelta {
            full: true,
            upserted_connections: vec![
                connection("a", "127.0.0.1:7070", None, pb::ConnectionState::Listen),
                connection(
                    "b",
                    "[fe80::1]:40000",
                    Some("[fe80::1234:5678:9abc:def0]:65535"),
                    pb::ConnectionState::Established,
                ),
            ],
            ..Default::default()
        },
        Instant::now(),
    );
    app.on_link(LinkState::Connected);
    keys(&mut app, "4");
    let screen = draw(&mut app, 80, 24);
    let listener = screen.lines().find(|l| l.contains("listening")).unwrap();
    assert!(listener.contains(" 127.0.0.1:7070 "), "{screen}");
    assert!(screen.contains("[fe80::…c:def0]:65535"), "{screen}");
}

/// The Migration view (`M`) of a migration in phase 4, at a terminal of 120x40.
#[test]
fn migration() {
    use crate::{
        app::{Command, Mode},
        migration::{MigrationCommand, Polled, sample},
    };
    let mut app = app(50).with_migration("127.0.0.1:7091");
    let polled = |writes, lag_sum| Polled {
        state: sample::state(orca_migrate::Status::Running { phase: 4 }, 3),
        overview: Some(sample::overview(Some(sample::sync(
            writes, lag_sum, writes,
        )))),
        overview_error: None,
    };
    let t0 = Instant::now();
    // Ten writes a second, lagging 2, 5 and 3 ms on average.
    for (i, (writes, lag_sum)) in [(10, 30.0), (20, 50.0), (30, 100.0), (40, 130.0)]
        .into_iter()
        .enumerate()
    {
        app.on_migration(
            Ok(polled(writes, lag_sum)),
            t0 + Duration::from_secs(i as u64),
        );
    }
    keys(&mut app, "M");
    assert!(app.show_migration);
    let screen = draw(&mut app, 120, 40);
    for shown in [
        "Migration m1 · running phase 4",
        "✓ 3 masters on A left",
        "▶ 4 agents moved to B",
        "leader stable",
        "agents 10 (10 active): on A 4 · on B 6",
        "/orca/app/x",
        "127.0.0.1:5051 (leader)",
        "lag (mean per second): 3.0 ms",
        "throughput: 10 writes/s",
    ] {
        assert!(screen.contains(shown), "{shown:?} missing:\n{screen}");
    }
    // Advancing while a phase runs is refused at once; a rollback asks first.
    keys(&mut app, "a");
    assert_eq!(app.mode, Mode::Normal);
    keys(&mut app, "r");
    assert!(matches!(app.mode, Mode::Confirm { .. }));
    let command = app.on_key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE));
    assert_eq!(
        command,
        Some(Command::Migration(MigrationCommand::Rollback {
            id: "m1".into(),
            to: 3
        }))
    );
    assert!(app.show_migration, "the view stays after the confirmation");
    keys(&mut app, "j");
    let screen = draw(&mut app, 120, 40);
    // Ages change from run to run.
    let screen = screen
        .lines()
        .map(|l| match l.find("updated") {
            Some(i) => format!("{}…", &l[..i]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(screen);
    app.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert!(!app.show_migration, "Esc goes back to the tabs");
}

#[test]
fn without_a_migration_service_m_says_how_to_get_one() {
    let mut app = app(10);
    keys(&mut app, "M");
    assert!(!app.show_migration);
    let (text, _, _) = app.message.clone().unwrap();
    assert!(text.contains("--migration"), "{text}");
}
