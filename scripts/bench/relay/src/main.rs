//! A stdio relay that does none of the proxy's work, built in the proxy's thread shape, so that the
//! benchmark can tell the cost of that shape from the cost of the proxy's work (scripts/bench.sh).
//!
//!   bench-relay [--hub] -- CMD ARGS...
//!
//! Spawns CMD and relays lines both ways: a thread reads each pipe (our stdin, the child's stdout), a
//! thread writes each (the child's stdin, our stdout), lines travel as Strings over crossbeam channels,
//! and a writer flushes when its channel is empty, as the proxy's writers do. With `--hub` every line
//! also passes through one hub thread, as every message passes through the proxy's dispatcher. Nothing
//! is parsed, rewritten or looked up.
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::thread;

/// A line on its way to the child (`Up`) or to our stdout (`Down`), through the hub.
enum Line {
    Up(String),
    Down(String),
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hub = args.first().is_some_and(|a| a == "--hub");
    let cmd: Vec<&String> = args.iter().skip_while(|a| *a != "--").skip(1).collect();
    let Some((program, rest)) = cmd.split_first() else { die("usage: bench-relay [--hub] -- CMD ARGS...") };
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(&format!("spawn {program}: {e}")));
    let (Some(child_in), Some(child_out)) = (child.stdin.take(), child.stdout.take()) else { die("the child has no pipes") };
    let (to_child, for_child) = unbounded::<String>();
    let (to_stdout, for_stdout) = unbounded::<String>();
    let writers =
        [thread::spawn(move || write_lines(child_in, &for_child)), thread::spawn(move || write_lines(io::stdout().lock(), &for_stdout))];
    if hub {
        let (events, hub_inbox): (Sender<Line>, Receiver<Line>) = unbounded();
        let down = events.clone();
        thread::spawn(move || read_lines(BufReader::new(child_out), |l| down.send(Line::Down(l)).is_ok()));
        thread::spawn(move || read_lines(io::stdin().lock(), |l| events.send(Line::Up(l)).is_ok()));
        for line in hub_inbox {
            let _ = match line {
                Line::Up(l) => to_child.send(l),
                Line::Down(l) => to_stdout.send(l),
            };
        }
    } else {
        let down = to_stdout.clone();
        thread::spawn(move || read_lines(BufReader::new(child_out), |l| down.send(l).is_ok()));
        read_lines(io::stdin().lock(), |l| to_child.send(l).is_ok());
    }
    // Our stdin closed: the child's stdin closes once its writer is done, and the child exits.
    drop((to_child, to_stdout));
    for writer in writers {
        let _ = writer.join();
    }
    let _ = child.wait();
}

/// Hands each line (with its newline) to `forward` until end of input or `forward` says stop.
fn read_lines(mut input: impl BufRead, forward: impl Fn(String) -> bool) {
    loop {
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if !forward(line) => return,
            Ok(_) => {}
        }
    }
}

/// Writes each line from `inbox`, flushing when no other line is waiting.
fn write_lines(output: impl Write, inbox: &Receiver<String>) {
    let mut output = BufWriter::new(output);
    for line in inbox {
        if output.write_all(line.as_bytes()).is_err() || (inbox.is_empty() && output.flush().is_err()) {
            return;
        }
    }
    let _ = output.flush();
}

fn die(message: &str) -> ! {
    eprintln!("bench-relay: {message}");
    std::process::exit(2)
}
