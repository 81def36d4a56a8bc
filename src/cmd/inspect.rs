//! `weir inspect`: every pool of a running weir and the state of its endpoints, from its
//! admin port's `/pools`, as tables.

use anyhow::Context;
use http_body_util::BodyExt;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The admin address of the weir to ask.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    admin: String,
}

/// How long the admin port gets to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

pub fn main(args: Args) -> anyhow::Result<()> {
    super::runtime::build(Some(1))?.block_on(inspect(&args.admin))
}

async fn inspect(admin: &str) -> anyhow::Result<()> {
    let pools = fetch_pools(admin).await?;
    print!("{}", weir::admin::render_pools(&pools));
    Ok(())
}

/// GET `/pools` from `admin`, as JSON.
async fn fetch_pools(admin: &str) -> anyhow::Result<serde_json::Value> {
    let uri: http::Uri = format!("{}/pools", admin.trim_end_matches('/'))
        .parse()
        .context("the --admin address")?;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let response = tokio::time::timeout(ANSWER_WITHIN, client.get(uri.clone()))
        .await
        .with_context(|| format!("{uri} did not answer in {}s", ANSWER_WITHIN.as_secs()))?
        .with_context(|| format!("asking {uri}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading /pools")?
        .to_bytes();
    serde_json::from_slice(&body).context("/pools is not JSON")
}
