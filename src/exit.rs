//! Process exit codes, shared by every subcommand and documented in the README
//! and in `maestro --help`.

/// What a maestro run ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything succeeded.
    Ok = 0,
    /// The run completed but some targets failed or were unreachable.
    TargetsFailed = 1,
    /// Invalid input: bad SoT, bad arguments, a refused change. Nothing was changed.
    InvalidInput = 2,
    /// Denied by policy.
    PolicyDenied = 3,
    /// Blocked by the kill switch or a freeze window.
    Blocked = 4,
    /// maestro itself failed (I/O, git, database).
    Internal = 5,
    /// A rollout is paused, waiting for `promote` or `abort` (a `pause = {}`
    /// step, an inconclusive gate).
    Paused = 6,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// The table printed at the end of `maestro --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok
  1  some targets failed or were unreachable
  2  invalid input (bad SoT, bad arguments, refused change); nothing was changed
  3  denied by policy
  4  blocked by the kill switch or a freeze window
  5  maestro itself failed (I/O, git, database)
  6  a rollout is paused, waiting for promote or abort (pause step, inconclusive gate)";
