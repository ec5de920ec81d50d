//! The details panel: what the selected item is, its labels, limits and usage with hour-long
//! sparklines, and its neighbourhood (connected nodes as a list, or drawn as a graph).
use std::f64::consts::PI;

use orca_proto::topology::v1 as pb;
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    symbols::Marker,
    text::{Line, Span},
    widgets::{
        Block, Borders, Paragraph, Sparkline, Wrap,
        canvas::{Canvas, Line as CanvasLine},
    },
};

use super::{caption, health_style};
use crate::{
    app::App,
    format,
    model::{
        domain::{Detail, agent_state_word, connection_state_word, container_state_word},
        topology::{Metric, NodeEntry},
    },
    views::Item,
};

pub fn draw(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(item) = app.selected() else {
        let block = Block::default().borders(Borders::ALL).title(" details ");
        frame.render_widget(Paragraph::new("nothing selected").block(block), area);
        return;
    };
    let title = Line::from(vec![
        Span::styled(
            format!(" {} ", item.health().glyph()),
            health_style(item.health()),
        ),
        Span::styled(
            format!(
                "{} ",
                format::fit(&item.name(), area.width.saturating_sub(6) as usize)
            ),
            Style::default().add_modifier(Modifier::BOLD),
        ),
    ]);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .title_bottom(Line::from(" e export JSON · n graph · d close ").right_aligned());
    let inner = block.inner(area);
    frame.render_widget(block, area);

    match item {
        Item::Node(node) => draw_node(frame, app, node, inner),
        _ => {
            let lines = facts(&item, app);
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
        }
    }
}

fn kv(key: &str, value: impl Into<String>) -> Line<'static> {
    Line::from(vec![
        Span::styled(
            format!("{key:<10} "),
            Style::default().add_modifier(Modifier::DIM),
        ),
        Span::raw(value.into()),
    ])
}

/// Key/value lines for any item.
fn facts(item: &Item<'_>, app: &App) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    match item {
        Item::Node(n) => match &n.node.detail {
            Some(Detail::Host(h)) => {
                out.push(kv("host", &h.hostname));
                let ips: Vec<String> = h.ips.iter().map(ToString::to_string).collect();
                out.push(kv("ips", ips.join(", ")));
                out.push(kv("os", format!("{} · {} · {}", h.os, h.kernel, h.arch)));
                out.push(kv(
                    "cpu",
                    format!("{} cores, {} busy", h.cores, format::percent(h.cpu_percent)),
                ));
                out.push(kv(
                    "memory",
                    format!(
                        "{} used of {}",
                        format::bytes(n.memory_bytes() as f64),
                        format::bytes(h.memory_total_bytes as f64)
                    ),
                ));
                out.push(kv(
                    "disk",
                    format!(
                        "{} free of {}",
                        format::bytes(h.disk_free_bytes as f64),
                        format::bytes(h.disk_total_bytes as f64)
                    ),
                ));
                out.push(kv(
                    "load",
                    format!("{:.2} {:.2} {:.2}", h.load1, h.load5, h.load15),
                ));
                out.push(kv("up", format::age(h.uptime_seconds as i64)));
            }
            Some(Detail::Container(c)) => {
                out.push(kv("id", c.id.chars().take(24).collect::<String>()));
                out.push(kv("image", &c.image));
                out.push(kv(
                    "state",
                    format!("{} ({})", container_state_word(c.state), c.runtime),
                ));
                if !c.namespace.is_empty() {
                    out.push(kv("namespace", &c.namespace));
                }
                out.push(kv(
                    "limits",
                    format!(
                        "cpu {} · mem {}",
                        if c.cpu_limit_cores > 0.0 {
                            format::amount(c.cpu_limit_cores)
                        } else {
                            "-".into()
                        },
                        if c.memory_limit_bytes > 0 {
                            format::bytes(c.memory_limit_bytes as f64)
                        } else {
                            "-".into()
                        }
                    ),
                ));
                out.push(kv(
                    "usage",
                    format!(
                        "cpu {} · mem {}",
                        format::percent(c.cpu_percent),
                        format::bytes(c.memory_usage_bytes as f64)
                    ),
                ));
                if !c.ports.is_empty() {
                    out.push(kv("ports", c.ports.join(", ")));
                }
                out.push(kv("host", &n.hostname));
            }
            Some(Detail::Process(p)) => {
                out.push(kv("pid", format!("{} (parent {})", p.pid, p.ppid)));
                out.push(kv("command", p.cmdline.join(" ")));
                out.push(kv("user", format!("{} ({})", p.user, p.uid)));
                out.push(kv(
                    "usage",
                    format!(
                        "cpu {} · rss {} · vsz {}",
                        format::percent(p.cpu_percent),
                        format::bytes(p.rss_bytes as f64),
                        format::bytes(p.vsz_bytes as f64)
                    ),
                ));
                out.push(kv(
                    "files",
                    format!("{} fds · {} connections", p.open_fds, p.connections),
                ));
                if !p.container_id.is_empty() {
                    out.push(kv(
                        "container",
                        p.container_id.chars().take(24).collect::<String>(),
                    ));
                }
                out.push(kv("cgroup", &p.cgroup));
                if p.exited {
                    out.push(kv(
                        "exited",
                        format!("code {} signal {}", p.exit_code, p.exit_signal),
                    ));
                }
                out.push(kv("host", &n.hostname));
            }
            None => out.push(kv("id", n.id())),
        },
        Item::Connection(c) => {
            let conn = c.connection();
            out.push(kv(
                "process",
                format!("{} {} on {}", conn.comm, conn.pid, c.conn.hostname),
            ));
            out.push(kv("local", conn.local.to_string()));
            out.push(kv(
                "remote",
                conn.remote.map(|r| r.to_string()).unwrap_or_default(),
            ));
            out.push(kv(
                "peer",
                format!("{} ({})", c.conn.peer_name, c.conn.peer_node),
            ));
            let direction = match conn.direction {
                pb::Direction::Outbound => "outbound (connect)",
                pb::Direction::Inbound => "inbound (accept)",
                pb::Direction::Unspecified => "-",
            };
            out.push(kv("direction", direction));
            out.push(kv("state", connection_state_word(c.state())));
            out.push(kv(
                "sent",
                format!(
                    "{} ({})",
                    format::bytes(conn.bytes_sent as f64),
                    format::rate(c.sent_per_second)
                ),
            ));
            out.push(kv(
                "received",
                format!(
                    "{} ({})",
                    format::bytes(conn.bytes_received as f64),
                    format::rate(c.received_per_second)
                ),
            ));
            out.push(kv("retrans", conn.retransmits.to_string()));
            if conn.aggregated > 1 {
                out.push(kv(
                    "folded",
                    format!("{} closed connections", conn.aggregated),
                ));
            }
        }
        Item::Agent(a) => {
            out.push(kv("id", &a.id));
            out.push(kv("state", agent_state_word(a.state)));
            if a.drain != orca_proto::operator::v1::AgentDrainState::None {
                out.push(kv(
                    "drain",
                    format!("{} ({} tasks left)", a.status_word(), a.drain_tasks_left),
                ));
            } else if a.deactivated {
                out.push(kv("offers", "none: deactivated by an operator"));
            }
            for name in ["cpus", "mem", "disk", "gpus"] {
                let total = a.total.get(name).copied().unwrap_or(0.0);
                if total == 0.0 {
                    continue;
                }
                let used = a.used.get(name).copied().unwrap_or(0.0);
                let offered = a.offered.get(name).copied().unwrap_or(0.0);
                let show = |v: f64| {
                    if name == "mem" || name == "disk" {
                        format::megabytes(v)
                    } else {
                        format::amount(v)
                    }
                };
                out.push(kv(
                    name,
                    format!(
                        "{} used · {} offered · {} total",
                        show(used),
                        show(offered),
                        show(total)
                    ),
                ));
            }
            for (name, ranges) in &a.total_ranges {
                out.push(kv(name, ranges.clone()));
            }
            let mut attributes: Vec<_> = a.attributes.iter().collect();
            attributes.sort();
            for (k, v) in attributes {
                out.push(kv("attribute", format!("{k}={v}")));
            }
            out.push(kv("tasks", a.running_tasks.to_string()));
        }
        Item::Framework(f) => {
            out.push(kv("id", &f.id));
            out.push(kv("roles", f.roles.join(", ")));
            out.push(kv(
                "share",
                format!(
                    "{:.1}% dominant, weight {}",
                    f.dominant_share * 100.0,
                    format::amount(f.weight)
                ),
            ));
            out.push(kv("user", format!("{} {}", f.user, f.principal)));
            out.push(kv(
                "state",
                if f.connected {
                    "connected"
                } else {
                    "disconnected"
                },
            ));
            out.push(kv(
                "using",
                format!(
                    "{} cpus · {}",
                    format::amount(f.used.get("cpus").copied().unwrap_or(0.0)),
                    format::megabytes(f.used.get("mem").copied().unwrap_or(0.0))
                ),
            ));
            out.push(kv("tasks", f.running_tasks.to_string()));
        }
        Item::Task(t) => {
            out.push(kv("task", format!("{} ({})", t.id, t.name)));
            out.push(kv("state", t.state.mesos_name()));
            if !t.reason.is_empty() || !t.message.is_empty() {
                out.push(kv("why", format!("{} {}", t.reason, t.message)));
            }
            out.push(kv(
                "framework",
                format!(
                    "{} ({})",
                    app.model.cluster.framework_name(&t.framework_id),
                    t.framework_id
                ),
            ));
            out.push(kv("agent", format!("{} ({})", t.hostname, t.agent_id)));
            out.push(kv("role", &t.role));
            let mut resources: Vec<_> = t.resources.iter().collect();
            resources.sort_by(|a, b| a.0.cmp(b.0));
            out.push(kv(
                "resources",
                resources
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", format::amount(**v)))
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
            if t.memory_bytes > 0 || t.cpu_seconds > 0.0 {
                out.push(kv(
                    "usage",
                    format!(
                        "{:.1} cpu-s · rss {} of {}",
                        t.cpu_seconds,
                        format::bytes(t.memory_bytes as f64),
                        format::bytes(t.memory_limit_bytes as f64)
                    ),
                ));
            }
            let mut labels: Vec<_> = t.labels.iter().collect();
            labels.sort();
            for (k, v) in labels {
                out.push(kv("label", format!("{k}={v}")));
            }
        }
    }
    if let Item::Node(n) = item {
        let mut labels: Vec<(String, String)> = n
            .node
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(c) = n.container() {
            labels.extend(c.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        labels.sort();
        for (k, v) in labels {
            out.push(kv("label", format!("{k}={v}")));
        }
    }
    out
}

fn draw_node(frame: &mut Frame<'_>, app: &App, node: &NodeEntry, area: Rect) {
    let facts = facts(&Item::Node(node), app);
    let graph_rows = if app.neighbourhood { 12 } else { 0 };
    let spark_rows: u16 = 8;
    let fact_rows =
        (facts.len() as u16).min(area.height.saturating_sub(spark_rows + graph_rows).max(3));
    let [facts_area, sparks, rest] = Layout::vertical([
        Constraint::Length(fact_rows),
        Constraint::Length(spark_rows.min(area.height.saturating_sub(fact_rows))),
        Constraint::Fill(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(facts), facts_area);
    draw_sparklines(frame, node, sparks);
    if app.neighbourhood {
        draw_graph(frame, app, node, rest);
    } else {
        draw_neighbour_list(frame, app, node, rest);
    }
}

/// CPU, memory, out and in over the retained hour (15-second points), newest on the right.
/// The history is fetched when the panel opens; until it arrives the latest values show.
fn draw_sparklines(frame: &mut Frame<'_>, node: &NodeEntry, area: Rect) {
    let rows = Layout::vertical([Constraint::Length(2); 4]).split(area);
    let metrics = [
        (Metric::Cpu, "cpu", Color::Cyan),
        (Metric::Memory, "mem", Color::Magenta),
        (Metric::NetOut, "out", Color::Blue),
        (Metric::NetIn, "in", Color::Green),
    ];
    for ((metric, label, colour), row) in metrics.into_iter().zip(rows.iter()) {
        let [name, spark] =
            Layout::horizontal([Constraint::Length(12), Constraint::Fill(1)]).areas(*row);
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(Span::styled(
                    label,
                    Style::default().add_modifier(Modifier::DIM),
                )),
                Line::from(caption(metric, node.latest(metric))),
            ]),
            name,
        );
        let Some(history) = node.history() else {
            frame.render_widget(
                Paragraph::new("loading the last hour…")
                    .style(Style::default().add_modifier(Modifier::DIM)),
                spark,
            );
            continue;
        };
        let series = history.series(metric);
        let width = spark.width as usize;
        let skip = series.len().saturating_sub(width);
        // Scaled to integers for the widget (it takes u64): keep two decimals of percent.
        let data: Vec<u64> = series
            .values()
            .skip(skip)
            .map(|v| (v.max(0.0) as f64 * 100.0) as u64)
            .collect();
        frame.render_widget(
            Sparkline::default()
                .data(&data)
                .style(Style::default().fg(colour)),
            spark,
        );
    }
}

/// Connected nodes, busiest first.
fn neighbours<'a>(app: &'a App, node: &'a NodeEntry) -> Vec<(String, bool, u64, u32)> {
    let Some(view) = app.tab.topology() else {
        return Vec::new();
    };
    let data = app.model.topology.view(view);
    let mut out: Vec<(String, bool, u64, u32)> = data
        .neighbours(node.id())
        .map(|(edge, other, outgoing)| {
            let name = data
                .nodes
                .get(other)
                .filter(|n| !n.is_pseudo())
                .map(|n| match n.process() {
                    Some(p) => format!("{} {} on {}", p.comm, p.pid, n.hostname),
                    None => n.name().to_owned(),
                })
                .unwrap_or_else(|| other.trim_start_matches("external:").to_owned());
            (
                name,
                outgoing,
                edge.bytes_sent + edge.bytes_received,
                edge.connections,
            )
        })
        .collect();
    out.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(b.1.cmp(&a.1)));
    out
}

fn draw_neighbour_list(frame: &mut Frame<'_>, app: &App, node: &NodeEntry, area: Rect) {
    if area.height == 0 {
        return;
    }
    let list = neighbours(app, node);
    let mut lines = vec![Line::from(Span::styled(
        format!("connected ({})", list.len()),
        Style::default().add_modifier(Modifier::DIM),
    ))];
    for (name, outgoing, bytes, connections) in list.iter().take(area.height as usize - 1) {
        lines.push(Line::from(format!(
            "{} {}  {} conn · {}",
            if *outgoing { "→" } else { "←" },
            name,
            connections,
            format::bytes(*bytes as f64)
        )));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// The selected node in the middle, its neighbours around it, outgoing edges solid and
/// labelled with an arrow (braille canvas: works in any terminal with Unicode).
fn draw_graph(frame: &mut Frame<'_>, app: &App, node: &NodeEntry, area: Rect) {
    if area.height < 4 {
        return;
    }
    const MAX: usize = 12;
    let list = neighbours(app, node);
    let shown = list.len().min(MAX);
    let more = list.len().saturating_sub(MAX);
    let centre = node.name().to_owned();
    let canvas = Canvas::default()
        .block(Block::default().borders(Borders::TOP).title(format!(
            " neighbourhood ({}{}) ",
            list.len(),
            if more > 0 {
                format!(", {more} not drawn")
            } else {
                String::new()
            }
        )))
        .marker(Marker::Braille)
        .x_bounds([-100.0, 100.0])
        .y_bounds([-100.0, 100.0])
        .paint(move |ctx| {
            let points: Vec<(f64, f64)> = (0..shown)
                .map(|i| {
                    let angle = 2.0 * PI * i as f64 / shown.max(1) as f64 + PI / 2.0;
                    (70.0 * angle.cos(), 75.0 * angle.sin())
                })
                .collect();
            for ((_, outgoing, _, _), (x, y)) in list.iter().zip(&points) {
                ctx.draw(&CanvasLine {
                    x1: 0.0,
                    y1: 0.0,
                    x2: *x * 0.8,
                    y2: *y * 0.8,
                    color: if *outgoing { Color::Cyan } else { Color::Green },
                });
            }
            ctx.layer();
            ctx.print(
                -(centre.chars().count() as f64) * 1.5,
                0.0,
                Span::styled(
                    centre.clone(),
                    Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
                ),
            );
            for ((name, outgoing, _, _), (x, y)) in list.iter().zip(&points) {
                let label = format!(
                    "{}{}",
                    if *outgoing { "→" } else { "←" },
                    format::fit(name, 18)
                );
                let x = if *x < 0.0 {
                    x - label.chars().count() as f64 * 2.0
                } else {
                    *x
                };
                ctx.print(x, *y, label);
            }
        });
    frame.render_widget(canvas, area);
}
