use chrono::{DateTime, Utc};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    parse_time(s).unwrap()
}

#[test]
fn a_recurring_window_is_open_from_each_start_for_its_duration_in_its_time_zone() {
    // Fridays 18:00 in Berlin (CET, UTC+1 in November) for 62 hours.
    let s = Schedule::recurring("0 18 * * FRI", "62h", "Europe/Berlin").unwrap();
    let open = s
        .open_at(at("2026-11-27T17:30:00Z"))
        .expect("open on Friday evening");
    assert_eq!(open.start, at("2026-11-27T17:00:00Z"));
    assert_eq!(open.end, at("2026-11-30T07:00:00Z"));
    assert!(
        s.open_at(at("2026-11-27T16:59:59Z")).is_none(),
        "not before"
    );
    assert!(
        s.open_at(at("2026-11-30T07:00:00Z")).is_none(),
        "not at the end"
    );
    assert!(s.open_at(at("2026-11-29T12:00:00Z")).is_some(), "Sunday");
    assert!(s.open_at(at("2026-12-02T12:00:00Z")).is_none(), "Wednesday");
    let next = s.next_after(at("2026-12-02T12:00:00Z")).unwrap();
    assert_eq!(next.start, at("2026-12-04T17:00:00Z"));
}

#[test]
fn a_one_off_window_is_half_open() {
    let s = Schedule::Once {
        start: at("2026-11-27T00:00:00Z"),
        end: at("2026-11-28T00:00:00Z"),
    };
    assert!(s.open_at(at("2026-11-27T00:00:00Z")).is_some());
    assert!(s.open_at(at("2026-11-28T00:00:00Z")).is_none());
    assert!(s.open_at(at("2026-11-26T23:59:59Z")).is_none());
}

#[test]
fn bad_schedules_say_what_to_write() {
    assert!(
        parse_cron("0 18 * *")
            .unwrap_err()
            .to_string()
            .contains("5 fields")
    );
    assert!(parse_cron("61 * * * *").is_err());
    assert!(
        parse_duration("2 hours")
            .unwrap_err()
            .to_string()
            .contains("2h30m")
    );
    assert!(parse_duration("0m").is_err());
    assert!(parse_duration("").is_err());
    assert_eq!(parse_duration("2h30m").unwrap().num_minutes(), 150);
    assert_eq!(parse_duration("1w").unwrap().num_days(), 7);
    assert!(
        parse_timezone("Mars/Olympus")
            .unwrap_err()
            .to_string()
            .contains("IANA")
    );
    assert!(
        parse_time("2026-11-27T00:00:00")
            .unwrap_err()
            .to_string()
            .contains("offset")
    );
}
