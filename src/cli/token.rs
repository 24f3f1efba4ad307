//! `sustainbot token`: mints a JWT with the configured `JWT_SECRET` and `JWT_ALGORITHM`.

use std::process::ExitCode;

use sustainbot::auth::JwtKeys;
use sustainbot::config::AuthConfig;

use super::Env;

pub fn token(env: &Env, actor: &str, role: &str, ttl: u64) -> ExitCode {
    // One person is one person: a padded or oddly written actor would look like another human.
    if !sustainbot::identity::is_plain(actor) {
        eprintln!(
            "sustainbot token: --actor {actor:?} is not written plainly (white space around or doubled, or not NFKC); use {:?}",
            actor.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        return ExitCode::from(2);
    }
    // Never dev mode here: a token minted with a throwaway secret would verify nowhere.
    let auth = match env.section(|reader| AuthConfig::read(reader, false)) {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("sustainbot token: {e}");
            return ExitCode::from(2);
        }
    };
    // With an identity provider JWT_SECRET may be unset; a token minted now would verify nowhere.
    if auth.jwt_secret_generated {
        eprintln!(
            "sustainbot token: JWT_SECRET is not set: tokens come from the identity provider"
        );
        return ExitCode::from(2);
    }
    let keys = JwtKeys::new(auth.jwt_secret.expose().as_bytes(), auth.jwt_algorithm);
    match keys.mint(actor, role, (ttl > 0).then_some(ttl)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sustainbot token: {e}");
            ExitCode::FAILURE
        }
    }
}
