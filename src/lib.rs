//! maestro: terminal-first operations for AI agents and model servers on a
//! fleet of Linux machines, over plain SSH, with a git repository as the
//! single source of truth.
//!
//! The engine lives in this library: [`agent`] deploys registry versions
//! to nodes and reads back what they run, [`sot`] loads, validates and changes the
//! source of truth, [`fleet`] runs commands on nodes, [`playbook`] and
//! [`harden`] compile work into scripts, [`killswitch`] stops agents
//! everywhere and [`freeze`] holds changes in their windows, [`bus`]
//! carries every run's events, [`store`] records runs, [`telemetry`]
//! streams live measurements from every node and agent, [`drift`] compares
//! the fleet with the SoT, and [`ops`] is the operations layer the faces
//! call: prepare, plan, admit, apply; [`api`] serves what they recorded,
//! read-only, over HTTP. The faces, [`cli`] and the console
//! [`tui`] (with its demo on a simulated fleet, [`sim`]), are thin callers
//! of it. The engine never prints and never touches the terminal: every
//! engine module denies `print!`/`eprint!`, so the compiler checks it.

#![deny(clippy::todo, clippy::unimplemented)]

#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod agent;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod api;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod approval;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod bus;
pub mod cli;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod diag;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod drift;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod exit;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod fleet;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod freeze;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod gateway;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod harden;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod identity;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod killswitch;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod ledger;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod ops;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod playbook;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod policy;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod reflect;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod rollout;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod secrets;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod sim;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod sot;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod store;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod telemetry;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod terminal_text;
pub mod tui;
#[deny(clippy::print_stdout, clippy::print_stderr)]
pub mod work;
