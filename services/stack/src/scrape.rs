//! Reading a process' Prometheus endpoint, as tests do: a plain HTTP GET on loopback, and
//! the samples of the OpenMetrics text it returns.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest a scrape may take.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("GET {path} on port {port}: {source}")]
    Io {
        port: u16,
        path: String,
        source: std::io::Error,
    },
    #[error("GET {path} on port {port} took longer than {TIMEOUT:?}")]
    Timeout { port: u16, path: String },
    #[error("GET {path} on port {port} answered {status:?}")]
    Status { port: u16, path: String, status: String },
}

/// The body of `GET <path>` from `127.0.0.1:<port>`, if it answers 200.
pub async fn get(port: u16, path: &str) -> Result<String, ScrapeError> {
    let io = |source| ScrapeError::Io {
        port,
        path: path.to_string(),
        source,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(io)?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(io)?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| ScrapeError::Timeout {
            port,
            path: path.to_string(),
        })??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(ScrapeError::Status {
            port,
            path: path.to_string(),
            status: status.to_string(),
        });
    }
    Ok(body.to_string())
}

/// The samples `/metrics` on `127.0.0.1:<port>` shows.
pub async fn scrape(port: u16) -> Result<Samples, ScrapeError> {
    Ok(Samples::parse(&get(port, "/metrics").await?))
}

/// One sample: a metric name with its labels, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of an OpenMetrics (or Prometheus) text exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Every sample line; comments and lines that are not samples are skipped.
    pub fn parse(text: &str) -> Self {
        Self(text.lines().filter_map(parse_sample).collect())
    }

    /// The value of `name` with exactly `labels` (in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    /// The sum of `name` over all its label sets (None: no such metric).
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = self.0.iter().filter(|s| s.name == name).peekable();
        found.peek()?;
        Some(found.map(|s| s.value).sum())
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, after) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, after)
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    // A timestamp or exemplar may follow the value.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"} rest` -> the labels and `rest`.
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP tinysns_tsd_posts Posts accepted.\n\
        # TYPE tinysns_tsd_posts counter\n\
        tinysns_tsd_posts_total 12\n\
        tinysns_tsd_writes_total{kind=\"post\"} 12\n\
        tinysns_tsd_writes_total{kind=\"follow\"} 3\n\
        tinysns_tsd_slave_lag_entries{slave=\"2\"} 0\n\
        tinysns_x{a=\"1\",b=\"say \\\"hi\\\"\"} 1.5 1700000000\n\
        tinysns_tsd_batch_seconds_bucket{le=\"+Inf\"} 4\n\
        # EOF\n";

    #[test]
    fn samples_are_found_by_name_and_exact_labels() {
        let s = Samples::parse(TEXT);
        assert_eq!(s.value("tinysns_tsd_posts_total", &[]), Some(12.0));
        assert_eq!(s.value("tinysns_tsd_writes_total", &[("kind", "follow")]), Some(3.0));
        assert_eq!(
            s.value("tinysns_tsd_writes_total", &[]),
            None,
            "labels must match exactly"
        );
        assert_eq!(s.value("tinysns_tsd_slave_lag_entries", &[("slave", "2")]), Some(0.0));
        assert_eq!(s.value("tinysns_x", &[("b", "say \"hi\""), ("a", "1")]), Some(1.5));
        assert_eq!(
            s.value("tinysns_tsd_batch_seconds_bucket", &[("le", "+Inf")]),
            Some(4.0)
        );
        assert_eq!(s.sum("tinysns_tsd_writes_total"), Some(15.0));
        assert_eq!(s.sum("tinysns_nothing"), None);
        assert_eq!(s.0.len(), 6);
    }
}
