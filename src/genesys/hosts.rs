//! Where Genesys Cloud is: API and login hosts per region (the official SDK's table,
//! `spec/genesys/regions.json`; a test keeps this copy equal to it).

use reqwest::Url;

use super::GenesysError;

const REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "https://api.mypurecloud.com"),
    ("eu-west-1", "https://api.mypurecloud.ie"),
    ("ap-southeast-2", "https://api.mypurecloud.com.au"),
    ("ap-northeast-1", "https://api.mypurecloud.jp"),
    ("eu-central-1", "https://api.mypurecloud.de"),
    ("us-west-2", "https://api.usw2.pure.cloud"),
    ("ca-central-1", "https://api.cac1.pure.cloud"),
    ("ap-northeast-2", "https://api.apne2.pure.cloud"),
    ("eu-west-2", "https://api.euw2.pure.cloud"),
    ("ap-south-1", "https://api.aps1.pure.cloud"),
    ("us-east-2", "https://api.use2.us-gov-pure.cloud"),
    ("sa-east-1", "https://api.sae1.pure.cloud"),
    ("me-central-1", "https://api.mec1.pure.cloud"),
    ("ap-northeast-3", "https://api.apne3.pure.cloud"),
    ("eu-central-2", "https://api.euc2.pure.cloud"),
    ("mx-central-1", "https://api.mxc1.pure.cloud"),
    ("ap-southeast-1", "https://api.apse1.pure.cloud"),
    ("eusc-de-east-1", "https://api.edee1.eusc-pure.cloud"),
];

/// Every region name with its API base URL.
pub fn regions() -> &'static [(&'static str, &'static str)] {
    REGIONS
}

/// The API and login base URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    pub api: Url,
    pub login: Url,
}

impl Hosts {
    /// The hosts of a region; the login host is the API domain with `login.` for `api.`.
    pub fn for_region(name: &str) -> Result<Hosts, GenesysError> {
        let (_, api) = REGIONS
            .iter()
            .find(|(r, _)| r.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| GenesysError::UnknownRegion {
                name: name.to_string(),
                valid: REGIONS
                    .iter()
                    .map(|(r, _)| *r)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let login = api.replacen("https://api.", "https://login.", 1);
        Hosts::custom(api, &login)
    }

    /// Explicit base URLs (a proxy, the simulator). A path is kept: API paths go below it
    /// (`https://proxy/genesys` → `https://proxy/genesys/api/v2/…`).
    pub fn custom(api: &str, login: &str) -> Result<Hosts, GenesysError> {
        let parse = |u: &str| {
            let bad = |reason: &str| GenesysError::BadUrl {
                url: u.to_string(),
                reason: reason.to_string(),
            };
            let mut url = Url::parse(u).map_err(|e| bad(&e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(bad("expected http(s)://host[:port][/path]"));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(bad("a base URL takes no query or fragment"));
            }
            // Relative joins replace the last path segment unless the path ends with '/'.
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            Ok(url)
        };
        Ok(Hosts {
            api: parse(api)?,
            login: parse(login)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_regions_equal_the_spec_table() {
        let spec: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(include_str!("../../spec/genesys/regions.json")).expect("json");
        assert_eq!(spec.len(), REGIONS.len());
        for (r, api) in REGIONS {
            assert_eq!(spec[*r], *api, "{r}");
        }
    }

    #[test]
    fn login_host_and_unknown_region() {
        let h = Hosts::for_region("us-west-2").expect("region");
        assert_eq!(h.api.as_str(), "https://api.usw2.pure.cloud/");
        assert_eq!(h.login.as_str(), "https://login.usw2.pure.cloud/");
        let e = Hosts::for_region("us-east-9")
            .expect_err("unknown")
            .to_string();
        assert!(
            e.contains("us-east-9") && e.contains("eusc-de-east-1"),
            "{e}"
        );
        assert!(Hosts::custom("ftp://x", "http://y").is_err());
        assert!(Hosts::custom("https://x/?a=1", "http://y").is_err());
    }

    #[test]
    fn a_base_url_keeps_its_path() {
        let h = Hosts::custom("https://proxy/genesys", "https://proxy/login/").expect("hosts");
        assert_eq!(h.api.as_str(), "https://proxy/genesys/");
        assert_eq!(h.login.as_str(), "https://proxy/login/");
        let h = Hosts::custom("http://127.0.0.1:9", "http://127.0.0.1:9").expect("hosts");
        assert_eq!(h.api.as_str(), "http://127.0.0.1:9/");
    }
}
