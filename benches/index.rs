//! Segment index queries at scale: one camera-day out of a million rows, the
//! per-camera totals and the oldest-first scan retention uses, against the
//! same window query forced to scan the table (`NOT INDEXED`) as the
//! baseline. `cargo bench --bench index [-- ROWS]`.

use heldar_edge::recording::index::{self, NewSegment};
use heldar_edge::wallclock::UnixMs;
use rusqlite::Connection;
use std::time::{Duration, Instant};

const CAMERAS: usize = 8;
const SEGMENT_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

fn main() {
    let rows: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let path = std::env::temp_dir().join(format!("heldar-bench-index-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut conn = Connection::open(&path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
    heldar_edge::store::migrations::migrate(&mut conn).expect("migrate");

    let fill = Instant::now();
    let tx = conn.transaction().expect("tx");
    let per_camera = rows / CAMERAS;
    for i in 0..per_camera {
        for c in 0..CAMERAS {
            let start = i as i64 * SEGMENT_MS;
            let segment = NewSegment {
                camera: format!("cam{c}"),
                path: format!("cam{c}/{i:08}.mp4"),
                start: UnixMs(start),
                end: UnixMs(start + SEGMENT_MS),
                bytes: 4_000_000,
                codec: Some("h264".into()),
                width: Some(1920),
                height: Some(1080),
            };
            index::insert_segment(&tx, &segment).expect("insert");
        }
    }
    tx.commit().expect("commit");
    println!("rows: {} ({CAMERAS} cameras), filled in {:.1} s", per_camera * CAMERAS, fill.elapsed().as_secs_f64());

    let days = (per_camera as i64 * SEGMENT_MS / DAY_MS).max(1);
    let day_from = UnixMs((days / 2) * DAY_MS);
    let day_to = UnixMs(day_from.0 + DAY_MS);
    let cams = vec!["cam3".to_string()];
    let indexed = median(50, || {
        let rows = index::segments_overlapping(&conn, &cams, day_from, day_to).expect("query");
        assert!(rows.len() >= 1440.min(per_camera));
    });
    let scan = median(5, || {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id FROM segments NOT INDEXED WHERE camera = ?1 AND start_ms < ?2 AND end_ms > ?3 ORDER BY start_ms",
            )
            .expect("prepare");
        let n =
            stmt.query_map(rusqlite::params!["cam3", day_to.0, day_from.0], |r| r.get::<_, i64>(0)).expect("q").count();
        assert!(n >= 1440.min(per_camera));
    });
    let totals = median(50, || {
        assert_eq!(index::camera_totals(&conn).expect("totals").len(), CAMERAS);
    });
    let oldest = median(50, || {
        assert_eq!(index::oldest_segments(&conn, 100).expect("oldest").len(), 100);
    });
    println!("one camera-day window (1440 rows), indexed: {:>9.3} ms", ms(indexed));
    println!("same window, full scan (baseline):       {:>9.3} ms", ms(scan));
    println!("ratio indexed/scan:                      {:>9.4}", indexed.as_secs_f64() / scan.as_secs_f64());
    println!("bytes per camera (all cameras):          {:>9.3} ms", ms(totals));
    println!("oldest 100 segments across cameras:      {:>9.3} ms", ms(oldest));
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
