//! A TCP peer for tests that count bytes: `orca-traffic listen <addr>` accepts one
//! connection and reads it to the end; `orca-traffic send <addr> <bytes-per-second>
//! <seconds>` sends at that rate, paced every 50 ms, then prints how many bytes it sent.
//! Tests copy it under names of their own, so each end is a process with its own name.
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::ExitCode,
    time::{Duration, Instant},
};

fn listen(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    println!("listening {}", listener.local_addr()?);
    let (mut stream, _) = listener.accept()?;
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    println!("received {total}");
    Ok(())
}

fn send(addr: &str, rate: u64, seconds: u64) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    let chunk = vec![0x5au8; 64 << 10];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
        while sent < due {
            let n = (due - sent).min(chunk.len() as u64) as usize;
            stream.write_all(&chunk[..n])?;
            sent += n as u64;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stream.flush()?;
    println!("sent {sent}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["listen", addr] => listen(addr),
        ["send", addr, rate, seconds] => match (rate.parse(), seconds.parse()) {
            (Ok(rate), Ok(seconds)) => send(addr, rate, seconds),
            _ => Err(std::io::Error::other("rate and seconds are whole numbers")),
        },
        _ => Err(std::io::Error::other(
            "usage: orca-traffic listen <addr> | send <addr> <bytes-per-second> <seconds>",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orca-traffic: {e}");
            ExitCode::FAILURE
        }
    }
}
