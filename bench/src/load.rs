//! Running the load tools (`ab`, `wrk`) and reading their reports.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use serde::Serialize;

/// What one load run measured, client side and (filled in by the caller) server side.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measurement {
    pub requests: u64,
    pub total_ms: f64,
    pub req_per_s: f64,
    pub mib_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed requests: connection errors, short reads, non-2xx answers, requests never made.
    pub failed: u64,
    /// Server CPU (user + system) per completed request, in microseconds.
    pub cpu_us_per_req: f64,
}

fn number_after(text: &str, label: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// `ab -r -n N -c C [-k] URL` (`-r`: keep going on socket errors and count them).
pub fn ab(
    url: &str,
    bearer: Option<&str>,
    requests: u64,
    concurrency: u64,
    keep_alive: bool,
) -> anyhow::Result<Measurement> {
    let mut cmd = Command::new("ab");
    cmd.args([
        "-r",
        "-q",
        "-s",
        "60",
        "-n",
        &requests.to_string(),
        "-c",
        &concurrency.to_string(),
    ]);
    if keep_alive {
        cmd.arg("-k");
    }
    if let Some(token) = bearer {
        cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    let out = cmd
        .arg(url)
        .output()
        .context("running ab (apt-get install apache2-utils)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_ab(&text, requests).with_context(|| {
        format!(
            "unreadable ab report:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn parse_ab(text: &str, requested: u64) -> anyhow::Result<Measurement> {
    let total_s = number_after(text, "Time taken for tests:").context("no total time")?;
    let complete = number_after(text, "Complete requests:").context("no request count")? as u64;
    let failed = number_after(text, "Failed requests:").unwrap_or(0.0) as u64;
    let non_2xx = number_after(text, "Non-2xx responses:").unwrap_or(0.0) as u64;
    let kib_per_s = number_after(text, "Transfer rate:").unwrap_or(0.0);
    let percentile = |p: &str| number_after(text, p).unwrap_or(f64::NAN);
    Ok(Measurement {
        requests: complete,
        total_ms: total_s * 1000.0,
        req_per_s: number_after(text, "Requests per second:").unwrap_or(0.0),
        mib_per_s: kib_per_s / 1024.0,
        p50_ms: percentile("50%"),
        p99_ms: percentile("99%"),
        failed: failed + non_2xx + requested.saturating_sub(complete),
        cpu_us_per_req: 0.0,
    })
}

/// `wrk` with a Lua script that requests a random path of `paths_file` each time.
pub fn wrk(
    base: &str,
    bearer: Option<&str>,
    paths_file: &Path,
    connections: u64,
    seconds: u64,
) -> anyhow::Result<Measurement> {
    let script = paths_file.with_extension("lua");
    let auth = bearer
        .map(|t| format!("wrk.headers[\"Authorization\"] = \"Bearer {t}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &script,
        format!(
            "{auth}local paths = {{}}\n\
             for line in io.lines(\"{}\") do paths[#paths + 1] = line end\n\
             math.randomseed(7)\n\
             request = function() return wrk.format(\"GET\", paths[math.random(#paths)]) end\n",
            paths_file.display()
        ),
    )?;
    let threads = connections.min(2);
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
        ])
        .args(["--latency", "--timeout", "30s", "-s"])
        .arg(&script)
        .arg(base)
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).with_context(|| format!("unreadable wrk report:\n{text}"))
}

/// A wrk quantity such as `12.5ms` or `3.2MB`: its number and its unit.
fn number_and_unit(token: &str) -> Option<(f64, &str)> {
    let split = token.find(|c: char| c.is_ascii_alphabetic())?;
    let (value, unit) = token.split_at(split);
    Some((value.parse().ok()?, unit))
}

fn duration_ms(token: &str) -> Option<f64> {
    let (value, unit) = number_and_unit(token)?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

fn size_mib(token: &str) -> Option<f64> {
    let (value, unit) = number_and_unit(token)?;
    Some(match unit {
        "B" => value / 1_048_576.0,
        "KB" => value / 1024.0,
        "MB" => value,
        "GB" => value * 1024.0,
        "TB" => value * 1_048_576.0,
        _ => return None,
    })
}

pub fn parse_wrk(text: &str) -> anyhow::Result<Measurement> {
    let summary = text
        .lines()
        .find(|l| l.contains("requests in"))
        .context("no request summary")?;
    let mut words = summary.split_whitespace();
    let requests: u64 = words.next().context("count")?.parse()?;
    let secs = summary
        .split("requests in ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(duration_ms)
        .context("duration")?;
    let percentile = |p: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(duration_ms)
            .unwrap_or(f64::NAN)
    };
    let socket_errors: u64 = text
        .lines()
        .find(|l| l.trim_start().starts_with("Socket errors:"))
        .map(|l| {
            l.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let non_2xx = number_after(text, "Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
    let transfer = text
        .lines()
        .find(|l| l.starts_with("Transfer/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(size_mib)
        .unwrap_or(0.0);
    if requests == 0 {
        bail!("wrk completed no request");
    }
    Ok(Measurement {
        requests,
        total_ms: secs,
        req_per_s: number_after(text, "Requests/sec:").unwrap_or(0.0),
        mib_per_s: transfer,
        p50_ms: percentile("50%"),
        p99_ms: percentile("99%"),
        failed: socket_errors + non_2xx,
        cpu_us_per_req: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AB: &str = "Concurrency Level:      10
Time taken for tests:   0.012 seconds
Complete requests:      100
Failed requests:        2
Non-2xx responses:      1
Requests per second:    8333.33 [#/sec] (mean)
Transfer rate:          1200.5 [Kbytes/sec] received
Percentage of the requests served within a certain time (ms)
  50%      1
  66%      1
  99%      4
 100%      5 (longest request)
";

    const WRK: &str = "Running 10s test @ http://127.0.0.1:8080
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     99%    5.21ms
  143210 requests in 10.00s, 20.01GB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  14321.00
Transfer/sec:      2.00GB
";

    #[test]
    fn reads_ab_reports() {
        let m = parse_ab(AB, 100).unwrap();
        assert_eq!((m.requests, m.failed), (100, 3));
        assert_eq!((m.total_ms, m.p50_ms, m.p99_ms), (12.0, 1.0, 4.0));
        assert!((m.req_per_s - 8333.33).abs() < 0.01);
    }

    #[test]
    fn reads_wrk_reports() {
        let m = parse_wrk(WRK).unwrap();
        assert_eq!((m.requests, m.failed), (143_210, 9));
        assert_eq!((m.total_ms, m.p50_ms, m.p99_ms), (10_000.0, 0.812, 5.21));
        assert_eq!(m.mib_per_s, 2048.0);
    }
}
