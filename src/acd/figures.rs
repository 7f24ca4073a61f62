//! A campaign's figures (the seed's "Monitoreo de Campañas"), computed by
//! one pure function over the timestamps of its interactions, so each
//! definition (docs/acd.md) is tested exactly with made-up times.

/// One interaction of the campaign started in the period, as the figures
/// see it; times in unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub started_at: i64,
    pub assigned_at: Option<i64>,
    pub first_reply_at: Option<i64>,
    pub closed_at: Option<i64>,
    /// The customer's last message.
    pub last_in_at: i64,
    /// Refused because `acd_max_waiting` were waiting: not offered.
    pub refused: bool,
}

/// The campaign's thresholds, in seconds (its config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub service_level_s: u64,
    pub service_level_percent: u32,
    pub abandon_s: u64,
    pub short_abandon_s: u64,
    pub chat_time_s: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Figures {
    pub offered: u64,
    pub answered: u64,
    pub answered_in_time: u64,
    pub abandoned: u64,
    pub short_abandoned: u64,
    pub refused_busy: u64,
    /// answered_in_time / (answered + abandoned - short_abandoned).
    pub service_level: Option<f64>,
    pub service_level_percent: u32,
    pub service_level_met: Option<bool>,
    /// abandoned / offered.
    pub abandon_rate: Option<f64>,
    pub avg_first_response_s: Option<f64>,
    pub avg_handle_s: Option<f64>,
    pub chat_time_overruns: u64,
}

/// The figures at `now` of the interactions in `rows` (those started
/// since the period began).
pub fn compute(rows: &[Row], t: &Thresholds, now: i64) -> Figures {
    let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let (sl, abandon, short, chat) = (
        ms(t.service_level_s),
        ms(t.abandon_s),
        ms(t.short_abandon_s),
        ms(t.chat_time_s),
    );
    let mut f = Figures {
        offered: 0,
        answered: 0,
        answered_in_time: 0,
        abandoned: 0,
        short_abandoned: 0,
        refused_busy: 0,
        service_level: None,
        service_level_percent: t.service_level_percent,
        service_level_met: None,
        abandon_rate: None,
        avg_first_response_s: None,
        avg_handle_s: None,
        chat_time_overruns: 0,
    };
    let (mut first_sum, mut handle_sum, mut handled) = (0i64, 0i64, 0u64);
    for r in rows {
        if r.refused {
            f.refused_busy += 1;
            continue;
        }
        f.offered += 1;
        match r.first_reply_at {
            Some(first) => {
                f.answered += 1;
                let wait = first - r.started_at;
                first_sum += wait;
                if wait <= sl {
                    f.answered_in_time += 1;
                }
                if let (Some(closed), Some(assigned)) = (r.closed_at, r.assigned_at) {
                    handle_sum += closed - assigned;
                    handled += 1;
                }
            }
            None => {
                let silent_until = r.last_in_at.saturating_add(abandon);
                let gone = match r.closed_at {
                    Some(c) => Some(c.min(silent_until)),
                    None if now >= silent_until => Some(silent_until),
                    None => None,
                };
                if let Some(at) = gone {
                    f.abandoned += 1;
                    if at - r.started_at < short {
                        f.short_abandoned += 1;
                    }
                }
            }
        }
        if r.closed_at.unwrap_or(now) - r.started_at > chat {
            f.chat_time_overruns += 1;
        }
    }
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    f.service_level = ratio(
        f.answered_in_time,
        f.answered + f.abandoned - f.short_abandoned,
    );
    f.service_level_met = f
        .service_level
        .map(|s| s * 100.0 >= f64::from(t.service_level_percent));
    f.abandon_rate = ratio(f.abandoned, f.offered);
    f.avg_first_response_s =
        (f.answered > 0).then(|| first_sum as f64 / 1000.0 / f.answered as f64);
    f.avg_handle_s = (handled > 0).then(|| handle_sum as f64 / 1000.0 / handled as f64);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn row(started: i64) -> Row {
        Row {
            started_at: started * S,
            assigned_at: None,
            first_reply_at: None,
            closed_at: None,
            last_in_at: started * S,
            refused: false,
        }
    }

    /// Eight customers on a fake clock, every figure worked out by hand:
    /// service level 60 s, abandon after 300 s of silence, short abandon
    /// 10 s, chat time 600 s, target 80 %.
    #[test]
    fn a_hand_computed_day() {
        let t = Thresholds {
            service_level_s: 60,
            service_level_percent: 80,
            abandon_s: 300,
            short_abandon_s: 10,
            chat_time_s: 600,
        };
        let now = 10_000 * S;
        let rows = [
            // 1: answered after 30 s, closed 200 s after assignment at 10.
            Row {
                assigned_at: Some(10 * S),
                first_reply_at: Some(30 * S),
                closed_at: Some(210 * S),
                ..row(0)
            },
            // 2: answered after 90 s (late), open for 9,900 s: overrun.
            Row {
                assigned_at: Some(150 * S),
                first_reply_at: Some(190 * S),
                ..row(100)
            },
            // 3: answered at once (0 s), closed after 700 s: overrun.
            Row {
                assigned_at: Some(200 * S),
                first_reply_at: Some(200 * S),
                closed_at: Some(900 * S),
                ..row(200)
            },
            // 4: closed unanswered after 5 s: a short abandon.
            Row {
                closed_at: Some(305 * S),
                ..row(300)
            },
            // 5: closed unanswered after 60 s: abandoned.
            Row {
                closed_at: Some(460 * S),
                ..row(400)
            },
            // 6: silent since 500 s, unanswered, now is past 800 s: abandoned
            // (and open 9,500 s: an overrun).
            Row {
                last_in_at: 500 * S,
                ..row(450)
            },
            // 7: still within abandon_s (silent since 9,800): waiting, not
            // abandoned, not overrun (started 9,790).
            Row {
                last_in_at: 9_800 * S,
                ..row(9_790)
            },
            // 8: refused busy.
            Row {
                refused: true,
                ..row(9_900)
            },
        ];
        let f = compute(&rows, &t, now);
        assert_eq!(f.offered, 7);
        assert_eq!(f.refused_busy, 1);
        assert_eq!(f.answered, 3);
        assert_eq!(f.answered_in_time, 2);
        assert_eq!(f.abandoned, 3);
        assert_eq!(f.short_abandoned, 1);
        // 2 / (3 + 3 - 1)
        assert_eq!(f.service_level, Some(0.4));
        assert_eq!(f.service_level_met, Some(false));
        assert_eq!(f.abandon_rate, Some(3.0 / 7.0));
        // (30 + 90 + 0) / 3
        assert_eq!(f.avg_first_response_s, Some(40.0));
        // (200 + 700) / 2: the open one is not handled yet.
        assert_eq!(f.avg_handle_s, Some(450.0));
        assert_eq!(f.chat_time_overruns, 3);
    }

    /// Nothing offered: no ratio at all rather than a made-up 0 or 100 %.
    #[test]
    fn an_empty_day_has_no_ratios() {
        let t = Thresholds {
            service_level_s: 60,
            service_level_percent: 80,
            abandon_s: 300,
            short_abandon_s: 0,
            chat_time_s: 600,
        };
        let f = compute(&[], &t, 0);
        assert_eq!(
            (f.service_level, f.abandon_rate, f.avg_handle_s),
            (None, None, None)
        );
    }
}
