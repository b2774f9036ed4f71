//! Topics: what names one, which topics a post carries, and which cluster numbers a topic's
//! posts.
//!
//! A topic is named by 1 to [`MAX_TOPIC_LEN`] of `a-z`, `0-9` and `_`, with at least one
//! letter or `_` (so `#1` is not a topic); names are case-folded (`#Rust` is `rust`). A post
//! carries the `#tags` in its text and any topics given explicitly, at most
//! [`MAX_TOPICS_PER_POST`] in all.
//!
//! Every topic has one home cluster, chosen from its name: the home gives each of the topic's
//! posts the next number of the topic's sequence, so the sequence is gap-free and the same in
//! every cluster. The home depends on the number of clusters, which is fixed for a deployment.

pub const MAX_TOPIC_LEN: usize = 64;
pub const MAX_TOPICS_PER_POST: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("a topic name cannot be empty")]
    Empty,
    #[error("a topic name has at most {MAX_TOPIC_LEN} characters")]
    TooLong,
    #[error("a topic name is made of letters, digits and _ (with at least one letter): {0:?} is not")]
    BadCharacters(String),
    #[error("a post carries at most {MAX_TOPICS_PER_POST} topics")]
    TooMany,
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The canonical name of a topic given by a user (`Rust`, `#rust` and ` rust ` are `rust`).
pub fn parse_topic(text: &str) -> Result<String, TopicError> {
    let name = text.trim();
    let name = name.strip_prefix('#').unwrap_or(name);
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.chars().count() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if !name.chars().all(is_topic_char) || name.chars().all(|c| c.is_ascii_digit()) {
        return Err(TopicError::BadCharacters(name.to_string()));
    }
    Ok(name.to_ascii_lowercase())
}

/// The `#tags` of a post's text, canonical, in order of first appearance. A tag starts at a
/// `#` that begins the text or follows a character that cannot be part of a tag (so
/// `a#b` and `##` tag nothing); one that is too long or all digits is just text.
pub fn hashtags(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts_tag = c == '#' && previous.is_none_or(|p| !is_topic_char(p) && p != '#');
        previous = Some(c);
        if !starts_tag {
            continue;
        }
        let start = at + 1;
        let mut end = start;
        while let Some(&(i, next)) = chars.peek() {
            if !is_topic_char(next) {
                break;
            }
            end = i + next.len_utf8();
            previous = Some(next);
            chars.next();
        }
        if let Ok(topic) = parse_topic(&text[start..end])
            && !found.contains(&topic)
        {
            found.push(topic);
        }
    }
    found
}

/// The topics a post carries: its text's `#tags`, then the explicit ones, each once.
pub fn topics_of(text: &str, explicit: &[String]) -> Result<Vec<String>, TopicError> {
    let mut topics = hashtags(text);
    for given in explicit {
        let topic = parse_topic(given)?;
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    if topics.len() > MAX_TOPICS_PER_POST {
        return Err(TopicError::TooMany);
    }
    Ok(topics)
}

/// The cluster (1-based) that numbers `topic`'s posts among `clusters` clusters: FNV-1a of
/// the name, so every member of every release agrees without asking anyone.
pub fn home_cluster(topic: &str, clusters: u32) -> u32 {
    let hash = topic.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(clusters.max(1))) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_folded_and_checked() {
        assert_eq!(parse_topic(" #Rust "), Ok("rust".to_string()));
        assert_eq!(parse_topic("k8s_ops"), Ok("k8s_ops".to_string()));
        assert_eq!(parse_topic("#"), Err(TopicError::Empty));
        assert_eq!(parse_topic("2024"), Err(TopicError::BadCharacters("2024".into())));
        assert_eq!(parse_topic("a b"), Err(TopicError::BadCharacters("a b".into())));
        assert_eq!(parse_topic("café"), Err(TopicError::BadCharacters("café".into())));
        assert_eq!(parse_topic(&"x".repeat(MAX_TOPIC_LEN)), Ok("x".repeat(MAX_TOPIC_LEN)));
        assert_eq!(parse_topic(&"x".repeat(MAX_TOPIC_LEN + 1)), Err(TopicError::TooLong));
    }

    #[test]
    fn hashtags_are_found_where_a_tag_can_start() {
        assert_eq!(hashtags("#Rust is fun, #rust #go!"), vec!["rust", "go"]);
        assert_eq!(hashtags("mail a#b, ##x, # alone, #1 and #1st"), vec!["1st"]);
        assert_eq!(hashtags("(#k8s) née #é #ok"), vec!["k8s", "ok"]);
        assert_eq!(
            hashtags(&format!("#{}", "y".repeat(MAX_TOPIC_LEN + 1))),
            Vec::<String>::new()
        );
        assert_eq!(hashtags("no tags"), Vec::<String>::new());
    }

    #[test]
    fn a_post_carries_its_tags_and_explicit_topics_once_each_and_at_most_ten() {
        let explicit = vec!["Go".to_string(), "#rust".to_string(), "db".to_string()];
        assert_eq!(
            topics_of("#rust and #go", &explicit),
            Ok(vec!["rust".into(), "go".into(), "db".into()])
        );
        assert_eq!(
            topics_of("x", &["bad name".to_string()]),
            Err(TopicError::BadCharacters("bad name".into()))
        );
        let many: String = (0..MAX_TOPICS_PER_POST + 1).map(|i| format!("#t{i} ")).collect();
        assert_eq!(topics_of(&many, &[]), Err(TopicError::TooMany));
        let ten: String = (0..MAX_TOPICS_PER_POST).map(|i| format!("#t{i} ")).collect();
        assert_eq!(topics_of(&ten, &[]).map(|t| t.len()), Ok(MAX_TOPICS_PER_POST));
    }

    #[test]
    fn every_topic_has_one_home_among_the_clusters_and_they_spread() {
        let homes: Vec<u32> = (0..300).map(|i| home_cluster(&format!("topic{i}"), 3)).collect();
        assert!(homes.iter().all(|h| (1..=3).contains(h)));
        for cluster in 1..=3 {
            let n = homes.iter().filter(|h| **h == cluster).count();
            assert!(n > 60, "cluster {cluster} is home of only {n} of 300 topics");
        }
        assert_eq!(home_cluster("rust", 3), home_cluster("rust", 3));
        assert_eq!(home_cluster("rust", 1), 1);
        assert_eq!(home_cluster("rust", 0), 1, "no clusters: the first");
    }
}
