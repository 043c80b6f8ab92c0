//! `wikiwire token`: a new publisher token, and the hash for the configuration.

use wikiwire_hub::token;

use crate::cli::TokenArgs;

pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let secret = token::generate();
    let hash = token::format_hash(&token::hash(&secret));
    println!("token:      {secret}");
    println!("token_hash: {hash}");
    println!();
    println!(
        "Give the token to the wiki (it is shown only now) and put the hash in the hub's configuration:"
    );
    println!();
    println!("[[publisher]]");
    println!("name = {:?}", args.name.as_deref().unwrap_or("mywiki"));
    println!("token_hash = \"{hash}\"");
    println!("wikis = [{:?}]", args.name.as_deref().unwrap_or("MyWiki"));
    Ok(())
}
