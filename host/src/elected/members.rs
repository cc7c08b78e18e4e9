//! The members of an elected cluster: configured, the same on every node, so that a majority
//! is counted over them and never over who happens to be up.

use crate::config::ConfigError;
use crate::config::setting::MEMBERS;

/// One member: its name and the base URL the others reach it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name, unique in the cluster (`--name`).
    pub name: String,
    /// Its base URL, `http://host:port`.
    pub url: String,
}

/// Every member of the cluster, in the order configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members(Vec<Member>);

impl Members {
    /// Reads `name=url,...` (`MEMBERS`): at least three members (fewer cannot lose one and
    /// keep a majority), unique names and URLs, each URL `http://host:port`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let invalid = |why: String| Err(ConfigError::Invalid(format!("{MEMBERS}: {why}")));
        let mut members: Vec<Member> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let Some((name, url)) = item.split_once('=') else {
                return invalid(format!("{item:?} is not name=url"));
            };
            let (name, url) = (name.trim(), url.trim().trim_end_matches('/'));
            let authority = url.strip_prefix("http://").unwrap_or_default();
            let uri: Option<http::uri::Authority> = authority.parse().ok();
            if name.is_empty() || uri.is_none_or(|uri| uri.port_u16().is_none()) {
                return invalid(format!("{item:?}: give a name and an http://host:port URL"));
            }
            if members.iter().any(|m| m.name == name || m.url == url) {
                return invalid(format!("{item:?} repeats a member's name or URL"));
            }
            members.push(Member { name: name.to_owned(), url: url.to_owned() });
        }
        if members.len() < 3 {
            return invalid(format!(
                "{} member(s) given; an elected cluster needs at least 3, so that one can fail \
                 and a majority remains",
                members.len()
            ));
        }
        Ok(Self(members))
    }

    /// The member called `name`.
    pub fn get(&self, name: &str) -> Option<&Member> {
        self.0.iter().find(|m| m.name == name)
    }

    /// Every member but `name`.
    pub fn others<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.0.iter().filter(move |m| m.name != name)
    }

    /// How many members make a majority.
    pub fn majority(&self) -> usize {
        self.0.len() / 2 + 1
    }

    /// Every member, in the order configured.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.0.iter()
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_named_urls_at_least_three_and_never_repeated() {
        let members =
            Members::parse(" a=http://h1:8000, b=http://h2:8000/ ,c=http://h3:9").unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members.majority(), 2);
        assert_eq!(members.get("b").unwrap().url, "http://h2:8000", "a trailing / dropped");
        let others: Vec<&str> = members.others("b").map(|m| m.name.as_str()).collect();
        assert_eq!(others, ["a", "c"]);
        let five = "a=http://a:1,b=http://b:1,c=http://c:1,d=http://d:1,e=http://e:1";
        assert_eq!(Members::parse(five).unwrap().majority(), 3);
        let four = "a=http://a:1,b=http://b:1,c=http://c:1,d=http://d:1";
        assert_eq!(Members::parse(four).unwrap().majority(), 3, "an even count needs more");
        for bad in [
            "a=http://a:1,b=http://b:1",
            "a=http://a:1,b=http://b:1,a=http://c:1",
            "a=http://a:1,b=http://a:1,c=http://c:1",
            "a=http://a:1,b=http://b:1,c",
            "a=http://a:1,b=http://b:1,c=https://c:1",
            "a=http://a:1,b=http://b:1,c=http://c",
            "a=http://a:1,b=http://b:1,=http://c:1",
        ] {
            let refused = Members::parse(bad).unwrap_err().to_string();
            assert!(refused.starts_with("MEMBERS: "), "{bad}: {refused}");
        }
    }
}
