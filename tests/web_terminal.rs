//! The admin UI's web terminal end to end on the real binary: `ENABLE_ADMIN_UI`, `ENABLE_WEB_TERMINAL`
//! and `SHELL=/bin/sh`; a real PTY per terminal, output over SSE, input and resizes as POSTs.
//!
//! Processes are checked in `/proc`: a killed terminal's shell, and anything the shell started, must be
//! gone (a zombie only init has yet to collect counts as gone; one the proxy should have reaped does not).

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::admin::{Admin, AdminBuilder, AdminProxy};
use support::http::{EventStream, Req, SseEvent};
use support::{kill_pid, proc_group, proc_state, running, wait_until, WAIT};

/// How long a killed process may take to disappear.
const GONE: Duration = Duration::from_secs(5);

fn terminal_proxy(label: &str) -> AdminBuilder {
    AdminBuilder::new(label).env("ENABLE_WEB_TERMINAL", "true").env("SHELL", "/bin/sh")
}

/// A started terminal: its id, and its output stream (past the `connected` event).
struct Term {
    id: String,
    output: EventStream,
    /// Everything read from the stream so far.
    seen: String,
}

impl Term {
    fn start(admin: &Admin, cols: u64, rows: u64) -> Term {
        let response = admin.post("/admin/terminal/start", &json!({ "cols": cols, "rows": rows }));
        assert_eq!(response.status, 200, "POST /admin/terminal/start: {response:?}");
        let id = response.json()["termId"].as_str().unwrap_or_else(|| panic!("no termId: {response:?}")).to_owned();
        assert!(id.len() >= 16 && id.chars().all(|c| c.is_ascii_alphanumeric()), "a random id: {id:?}");
        let output = admin.events(&format!("/admin/terminal/{id}/output"));
        Term { id, output, seen: String::new() }
    }

    fn input(&self, admin: &Admin, text: &str) {
        let response = admin.post(&format!("/admin/terminal/{}/input", self.id), &json!({ "input": text }));
        assert_eq!(response.status, 200, "input {text:?}: {response:?}");
    }

    /// Reads output until it contains `needle`; all output read so far.
    fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {needle:?} in the terminal's output within {WAIT:?}; got {:?}", self.seen);
            let event = self.output.next_event(left);
            match event.event.as_deref() {
                Some("output") => self.seen.push_str(&output_text(&event)),
                Some("exit") => {
                    panic!("the terminal exited ({}) before {needle:?}; output {:?}", event.data, self.seen)
                }
                _ => {}
            }
        }
        self.seen.clone()
    }

    /// Runs `command` (a background job) and returns its pid, printed as `label=<pid>`.
    fn number(&mut self, admin: &Admin, command: &str, label: &str) -> i32 {
        self.input(admin, &format!("{command}\necho {label}=$!\n"));
        let pattern = format!("{label}=");
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.read_until(&pattern);
            // The echoed command line holds "label=$!"; the answer is the occurrence followed by digits.
            let found = text.match_indices(&pattern).find_map(|(at, _)| {
                let digits: String = text[at + pattern.len()..].chars().take_while(char::is_ascii_digit).collect();
                let complete = text[at + pattern.len() + digits.len()..].starts_with(['\r', '\n']);
                (complete && !digits.is_empty()).then(|| digits.parse().unwrap())
            });
            if let Some(n) = found {
                return n;
            }
            assert!(Instant::now() < deadline, "no number after {pattern:?} in {text:?}");
            let event = self.output.next_event(WAIT);
            if event.event.as_deref() == Some("output") {
                self.seen.push_str(&output_text(&event));
            }
        }
    }
}

/// An `output` event's text: a JSON string.
fn output_text(event: &SseEvent) -> String {
    match event.json() {
        Value::String(text) => text,
        other => panic!("output data is not a JSON string: {other}"),
    }
}

fn list(admin: &Admin) -> Vec<Value> {
    let body = admin.get_json("/admin/terminal/list");
    body["terminals"].as_array().unwrap_or_else(|| panic!("no terminals: {body}")).clone()
}

fn shell_pid(admin: &Admin, id: &str) -> i32 {
    let terminals = list(admin);
    let entry = terminals.iter().find(|t| t["id"] == id).unwrap_or_else(|| panic!("terminal {id} not listed: {terminals:?}"));
    entry["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {entry}")) as i32
}

/// Checks that the processes are gone; kills the ones that are not (so a failing test leaves nothing behind).
fn assert_gone(pids: &[(i32, &str)], proxy_pid: i32) {
    let deadline = Instant::now() + GONE;
    while pids.iter().any(|(pid, _)| running(*pid, Some(proxy_pid))) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let alive: Vec<String> = pids
        .iter()
        .filter(|(pid, _)| running(*pid, Some(proxy_pid)))
        .map(|(pid, what)| {
            let ((state, ppid), (pgrp, sid)) = (proc_state(*pid).unwrap_or_default(), proc_group(*pid).unwrap_or_default());
            format!("{what} (pid {pid}: state {state}, parent {ppid}, process group {pgrp}, session {sid})")
        })
        .collect();
    for (pid, _) in pids {
        if running(*pid, Some(proxy_pid)) {
            kill_pid(*pid);
        }
    }
    assert!(alive.is_empty(), "still running after {GONE:?}: {alive:?}");
}

#[test]
fn input_runs_in_the_shell_and_output_streams_back() {
    let proxy = terminal_proxy("term-echo").start();
    let admin = proxy.login();
    let mut term = Term::start(&admin, 80, 24);
    term.input(&admin, "echo hel\"\"lo-$((6*7))\n");
    term.read_until("hello-42");
}

#[test]
fn resize_changes_the_ptys_size() {
    let proxy = terminal_proxy("term-resize").start();
    let admin = proxy.login();
    let mut term = Term::start(&admin, 80, 24);
    term.input(&admin, "stty size\n");
    term.read_until("24 80");
    let response = admin.post(&format!("/admin/terminal/{}/resize", term.id), &json!({ "cols": 120, "rows": 50 }));
    assert_eq!(response.status, 200, "resize: {response:?}");
    term.input(&admin, "stty size\n");
    term.read_until("50 120");
    for bad in [json!({ "cols": 0, "rows": 10 }), json!({ "cols": 10 }), json!({ "cols": "wide", "rows": 10 })] {
        let response = admin.post(&format!("/admin/terminal/{}/resize", term.id), &bad);
        assert_eq!(response.status, 400, "resize {bad}: {response:?}");
    }
}

#[test]
fn list_shows_each_open_terminal() {
    let proxy = terminal_proxy("term-list").start();
    let admin = proxy.login();
    assert!(list(&admin).is_empty(), "no terminal yet");
    let (one, two) = (Term::start(&admin, 80, 24), Term::start(&admin, 80, 24));
    let terminals = list(&admin);
    assert_eq!(terminals.len(), 2, "{terminals:?}");
    for term in [&one, &two] {
        let entry =
            terminals.iter().find(|t| t["id"] == term.id.as_str()).unwrap_or_else(|| panic!("{} not listed: {terminals:?}", term.id));
        let pid = entry["pid"].as_i64().expect("pid") as i32;
        assert!(running(pid, None), "the listed pid {pid} runs");
        assert!(entry["lastActivity"].as_u64().is_some(), "{entry}");
    }
}

#[test]
fn delete_kills_the_shell_and_what_it_started() {
    let proxy = terminal_proxy("term-kill").start();
    let admin = proxy.login();
    let mut term = Term::start(&admin, 80, 24);
    let shell = shell_pid(&admin, &term.id);
    let child = term.number(&admin, "sleep 1000 &", "child");
    assert!(running(child, None), "the background sleep runs (pid {child})");
    let response = admin.delete(&format!("/admin/terminal/{}", term.id));
    assert_eq!(response.status, 200, "DELETE: {response:?}");
    assert_gone(&[(shell, "the shell"), (child, "the shell's background `sleep 1000 &`")], proxy.pid());
    assert!(!list(&admin).iter().any(|t| t["id"] == term.id.as_str()), "no longer listed");
    assert_eq!(admin.delete(&format!("/admin/terminal/{}", term.id)).status, 404, "a second DELETE");
    let response = admin.post(&format!("/admin/terminal/{}/input", term.id), &json!({ "input": "ls\n" }));
    assert_eq!(response.status, 404, "input to a killed terminal: {response:?}");
}

#[test]
fn delete_kills_a_foreground_child() {
    let proxy = terminal_proxy("term-kill-fg").start();
    let admin = proxy.login();
    let mut term = Term::start(&admin, 80, 24);
    let shell = shell_pid(&admin, &term.id);
    term.input(&admin, "echo fg=$$; exec sleep 1000\n");
    term.read_until("fg=");
    // `exec` replaces the shell: the terminal's process is now the sleep.
    let pid = wait_until("the sleep", WAIT, || {
        let cmdline = std::fs::read(format!("/proc/{shell}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline).starts_with("sleep").then_some(shell)
    });
    assert_eq!(admin.delete(&format!("/admin/terminal/{}", term.id)).status, 200);
    assert_gone(&[(pid, "the exec'd sleep")], proxy.pid());
}

#[test]
fn idle_terminals_expire() {
    let proxy = terminal_proxy("term-idle").env("TERMINAL_IDLE_TIMEOUT", "1").start();
    let admin = proxy.login();
    let term = Term::start(&admin, 80, 24);
    let shell = shell_pid(&admin, &term.id);
    let started = Instant::now();
    wait_until("the idle terminal to leave the list", Duration::from_secs(6), || {
        (!list(&admin).iter().any(|t| t["id"] == term.id.as_str())).then_some(())
    });
    assert!(started.elapsed() >= Duration::from_millis(900), "expired before the idle timeout: {:?}", started.elapsed());
    assert_gone(&[(shell, "the idle terminal's shell")], proxy.pid());
}

#[test]
fn a_second_output_stream_replays_earlier_output() {
    let proxy = terminal_proxy("term-replay").start();
    let admin = proxy.login();
    let mut term = Term::start(&admin, 80, 24);
    term.input(&admin, "echo before-$((40+2))\n");
    term.read_until("before-42");
    drop(term.output);
    // A reloaded page: a new stream first gets what was printed, then what comes next.
    let mut again = Term { id: term.id.clone(), output: admin.events(&format!("/admin/terminal/{}/output", term.id)), seen: String::new() };
    let first = again.output.next_event(WAIT);
    assert_eq!(first.event.as_deref(), Some("output"), "the replay comes first: {first:?}");
    assert!(output_text(&first).contains("before-42"), "the replay holds earlier output: {first:?}");
    again.input(&admin, "echo after-$((40+3))\n");
    again.read_until("after-43");
}

#[test]
fn exit_ends_the_stream_with_the_exit_code() {
    let proxy = terminal_proxy("term-exit").start();
    let admin = proxy.login();
    let mut term = Term::start(&admin, 80, 24);
    term.input(&admin, "exit 3\n");
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        let event = term.output.next_event(deadline.saturating_duration_since(Instant::now()));
        if event.event.as_deref() == Some("exit") {
            break event.json();
        }
    };
    assert_eq!(exit["exitCode"], 3, "{exit}");
    wait_until("the exited terminal to leave the list", WAIT, || (!list(&admin).iter().any(|t| t["id"] == term.id.as_str())).then_some(()));
}

#[test]
fn terminal_api_needs_a_session_and_csrf() {
    let proxy = terminal_proxy("term-auth").start();
    for req in [
        Req::post("/admin/terminal/start").json(&json!({ "cols": 80, "rows": 24 })),
        Req::get("/admin/terminal/list"),
        Req::get("/admin/terminal/terminal.js"),
        Req::get("/admin/terminal/xterm.mjs"),
    ] {
        let response = proxy.request(&req);
        assert_eq!(response.status, 401, "{} {} without login: {response:?}", req.method, req.target);
    }
    // The page itself sends a visitor without a session to the login page.
    let page = proxy.request(&Req::get("/admin/terminal.html"));
    assert!(matches!(page.status, 302 | 303 | 401), "terminal.html without login: {page:?}");
    assert!(!page.text().contains("xterm"), "no terminal page without login: {page:?}");
    let admin = proxy.login();
    let term = Term::start(&admin, 80, 24);
    let stranger = Req::get(&format!("/admin/terminal/{}/output", term.id));
    assert_eq!(proxy.request(&stranger).status, 401, "output without login");
    let no_csrf =
        Req::post(&format!("/admin/terminal/{}/input", term.id)).header("Cookie", &admin.cookie).json(&json!({ "input": "id\n" }));
    assert_eq!(admin.send(&no_csrf).status, 403, "input without the CSRF token");
    let no_csrf = Req::post("/admin/terminal/start").header("Cookie", &admin.cookie).json(&json!({}));
    assert_eq!(admin.send(&no_csrf).status, 403, "start without the CSRF token");
    let no_csrf = Req::new("DELETE", &format!("/admin/terminal/{}", term.id)).header("Cookie", &admin.cookie);
    assert_eq!(admin.send(&no_csrf).status, 403, "DELETE without the CSRF token");
    assert_eq!(list(&admin).len(), 1);
}

#[test]
fn terminal_is_404_without_enable_web_terminal() {
    let proxy = AdminBuilder::new("term-off").env("SHELL", "/bin/sh").start();
    let admin = proxy.login();
    assert_eq!(admin.get_json("/admin/environment")["webTerminal"], false);
    for response in [
        admin.post("/admin/terminal/start", &json!({ "cols": 80, "rows": 24 })),
        admin.get("/admin/terminal/list"),
        admin.get("/admin/terminal.html"),
        admin.get("/admin/terminal/xterm.mjs"),
    ] {
        assert_eq!(response.status, 404, "{response:?}");
    }
}

#[test]
fn terminal_page_and_scripts_are_served() {
    let proxy = terminal_proxy("term-page").start();
    let admin = proxy.login();
    assert_eq!(admin.get_json("/admin/environment")["webTerminal"], true);
    let page = admin.get("/admin/terminal.html");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.content_type().starts_with("text/html") && page.text().contains("/admin/terminal/terminal.js"), "{page:?}");
    let js = admin.get("/admin/terminal/terminal.js");
    assert_eq!(js.status, 200);
    assert!(js.content_type().starts_with("text/javascript"), "{js:?}");
    let xterm = admin.send(&admin.req("GET", "/admin/terminal/xterm.mjs").header("Accept-Encoding", "gzip"));
    assert_eq!(xterm.status, 200);
    assert_eq!(xterm.header("content-encoding"), Some("gzip"), "{:?}", xterm.headers);
    assert!(xterm.body.starts_with(&[0x1f, 0x8b]) && xterm.body.len() > 10_000, "a gzip body ({} bytes)", xterm.body.len());
    for asset in ["/admin/terminal/addon-fit.mjs", "/admin/terminal/xterm.css"] {
        assert_eq!(admin.get(asset).status, 200, "{asset}");
    }
}

#[test]
fn no_shell_survives_the_proxys_exit() {
    let mut proxy: AdminProxy = terminal_proxy("term-sigterm").start();
    let admin = proxy.login();
    let mut term = Term::start(&admin, 80, 24);
    let shell = shell_pid(&admin, &term.id);
    let child = term.number(&admin, "sleep 1000 &", "child");
    let second = Term::start(&admin, 80, 24);
    let second_shell = shell_pid(&admin, &second.id);
    let proxy_pid = proxy.pid();
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status after SIGTERM: {status:?}\n{}", proxy.stderr());
    assert_gone(
        &[(shell, "a terminal's shell"), (child, "its background `sleep 1000 &`"), (second_shell, "another terminal's shell")],
        proxy_pid,
    );
}
