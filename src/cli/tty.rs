//! Reading a secret from the terminal without echoing it.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;

/// Print `prompt` on the terminal, read one line with echo off, restore the terminal.
pub fn read_secret(tty: &File, prompt: &str) -> anyhow::Result<String> {
    let fd = tty.as_raw_fd();
    // SAFETY: tcgetattr/tcsetattr on a valid fd with a properly sized termios.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        anyhow::bail!("cannot read terminal settings");
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut w = tty;
    let _ = write!(w, "{prompt}");
    let _ = w.flush();
    let mut line = String::new();
    let read = BufReader::new(tty).read_line(&mut line);
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
