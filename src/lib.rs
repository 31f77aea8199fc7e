//! maestro: terminal-first operations for AI agents and model servers on a
//! fleet of Linux machines, over plain SSH, with a git repository as the
//! single source of truth.
//!
//! The engine lives in this library: [`sot`] loads, validates and changes the
//! source of truth, [`fleet`] runs commands on nodes, [`store`] records runs.
//! The faces, [`cli`] and the console [`tui`], are thin layers over it (and
//! [`demo`] puts the console on a simulated fleet). The engine never prints
//! and never touches the terminal.

#![deny(clippy::todo, clippy::unimplemented)]

pub mod cli;
pub mod demo;
pub mod diag;
pub mod exit;
pub mod fleet;
pub mod harden;
pub mod playbook;
pub mod sim;
pub mod sot;
pub mod store;
pub mod terminal_text;
pub mod tui;
