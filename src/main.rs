//! The `gjeldsbro` command line. Parses arguments and calls the library; nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the broker allocates and frees small
/// buffers on every request across tokio's worker threads, where glibc's
/// arenas spent about a sixth of the broker's CPU (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gjeldsbro::audit::retention::{PurgeReport, RetentionError};
use gjeldsbro::audit::verify::{Anchor, Verdict};
use gjeldsbro::auth::devtoken::{self, DevTokenArgs};
use gjeldsbro::cli::{self, CliError};
use gjeldsbro::config::Config;
use gjeldsbro::ingest::IngestError;
use gjeldsbro::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "gjeldsbro",
    version,
    about = "Federated query broker for Norway's register of unsecured consumer debt"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the client, lender and operations APIs.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Everything on one machine: simulated lenders, synthetic data, the broker.
    /// Runs the test kit's `gjeldsbro-demo` (see its `--help`: --data-dir,
    /// --listen, --lender-base-port, --persons, --seed); this binary carries
    /// no simulator.
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Load a lender's getalldata JSON file as its new dataset.
    Ingest {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        lender: String,
        file: PathBuf,
    },
    /// Pull a lender's daily dataset now (all pages).
    Pull {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        lender: String,
    },
    /// The disclosure log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Delete disclosure records past the retention period (after verifying them
    /// and storing a checkpoint) and consent records two years after they ended.
    Purge {
        #[arg(long, short)]
        config: PathBuf,
        /// Verify and count only; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make the copy letters (one PDF per person) for a day's disclosures the
    /// broker owes a letter for, and the manifest for the print provider.
    Letters {
        #[arg(long, short)]
        config: PathBuf,
        /// The day (Europe/Oslo), `YYYY-MM-DD`; default yesterday.
        #[arg(long)]
        date: Option<String>,
        /// Where the PDFs and the manifest go.
        #[arg(long)]
        out: PathBuf,
    },
    /// Mint a token signed with the dev key (dev and demo configs trust it).
    DevToken {
        /// Config whose issuer and audience the token carries.
        #[arg(long, short, default_value = "config/demo.toml")]
        config: PathBuf,
        /// The organisation (Maskinporten consumer) the token is for.
        #[arg(long)]
        org: Option<String>,
        /// A scope; repeat or space-separate for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A person (pid) for a person token.
        #[arg(long)]
        pid: Option<String>,
        /// Lifetime in seconds (at most the config's `[auth]
        /// max_token_lifetime_secs`, default one hour).
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        /// The PEM private key (default: the committed dev key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// An embed token for --pid instead: the embedded page's audience and
        /// scope, opens one session of the page and works nowhere else
        /// (--ttl-secs capped at [embed] token_max_lifetime_secs, default 300).
        #[arg(long)]
        embed: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the whole disclosure log; exit 0 if intact, 2
    /// naming the first bad record if not.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        /// A head saved from an earlier run (`SEQ:HASH`, as the summary prints
        /// it): also catches records cut off the end.
        #[arg(long)]
        anchor: Option<Anchor>,
    },
}

fn main() -> ExitCode {
    // Both sqlx and reqwest use rustls; name the provider once, before any TLS.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            telemetry::init(LogFormat::Json, "info,sqlx=warn");
            gjeldsbro::app::run(&config)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Command::Demo { args } => return Ok(cli::demo::hand_over(args)?),
        Command::Ingest {
            config,
            lender,
            file,
        } => {
            telemetry::init(LogFormat::Json, "info,sqlx=warn");
            match cli::ingest(&config, &lender, &file).await {
                Ok(report) => println!(
                    "accepted: lender {} now has {} customers, {} loans ({} open) from {}",
                    report.lender_id,
                    report.customers,
                    report.loans,
                    report.open_loans,
                    file.display()
                ),
                Err(CliError::Ingest(IngestError::Rejected(r))) => {
                    eprintln!(
                        "rejected: {} — rule {} broken at customer #{} ({}); the previous dataset stays in force",
                        file.display(),
                        r.rule,
                        r.position,
                        r.detail
                    );
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Pull { config, lender } => {
            telemetry::init(LogFormat::Json, "info,sqlx=warn");
            match cli::pull(&config, &lender).await {
                Ok(report) => println!(
                    "accepted: lender {} now has {} customers, {} loans ({} open) from its daily pull",
                    report.lender_id, report.customers, report.loans, report.open_loans
                ),
                Err(CliError::Ingest(IngestError::Rejected(r))) => {
                    eprintln!(
                        "rejected: the daily pull of {lender} broke rule {} at customer #{} ({}); the previous dataset stays in force",
                        r.rule, r.position, r.detail
                    );
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { config, anchor },
        } => match cli::audit::audit_verify(&config, anchor).await? {
            Verdict::Intact(summary) => println!("{summary}"),
            Verdict::Broken(b) => {
                println!("BROKEN: {b}");
                return Ok(ExitCode::from(2));
            }
        },
        Command::Purge { config, dry_run } => match cli::audit::purge(&config, dry_run).await {
            Ok(report) => print_purge(&report),
            Err(CliError::Retention(RetentionError::Broken(b))) => {
                println!("BROKEN: {b}; nothing was purged (run `gjeldsbro audit verify`)");
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e.into()),
        },
        Command::Letters { config, date, out } => {
            let r = cli::letters::letters(&config, date.as_deref(), &out).await?;
            if r.resumed_batches > 0 {
                println!(
                    "completed {} batch(es) an earlier run left unfinished",
                    r.resumed_batches
                );
            }
            match &r.manifest {
                Some(m) => println!(
                    "{}: {} letters covering {} disclosures in {}, manifest {m}",
                    r.day,
                    r.letters,
                    r.disclosures,
                    out.display()
                ),
                None => println!("{}: no disclosures left to letter", r.day),
            }
            if r.held_back_persons > 0 {
                eprintln!(
                    "held back: {} disclosures of {} persons without a postal address in the population register; they stay owed and the next run for {} tries again",
                    r.held_back_disclosures, r.held_back_persons, r.day
                );
                return Ok(ExitCode::from(3));
            }
        }
        Command::DevToken {
            config,
            org,
            scopes,
            pid,
            ttl_secs,
            key,
            embed,
        } => {
            let config = Config::load(&config)
                .with_context(|| "dev-token needs a config for issuer and audience")?;
            cli::dev_token_allowed(&config, ttl_secs)?;
            let key_pem = match key {
                Some(path) => std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => devtoken::DEV_SIGNING_KEY.as_bytes().to_vec(),
            };
            if embed {
                let (Some(pid), None) = (pid.as_deref(), org.as_deref()) else {
                    anyhow::bail!("--embed mints a person's embed token: give --pid, not --org");
                };
                println!(
                    "{}",
                    devtoken::embed_token(&key_pem, &config, pid, ttl_secs)?
                );
                return Ok(ExitCode::SUCCESS);
            }
            let token = cli::dev_token(
                &key_pem,
                DevTokenArgs {
                    issuer: config.auth.issuer.clone(),
                    audience: config.auth.audience.clone(),
                    org,
                    scopes,
                    pid,
                    ttl_secs,
                },
            )?;
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_purge(r: &PurgeReport) {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    match &r.new_checkpoint {
        Some(c) => println!(
            "disclosures before {}: {} records verified, checkpoint at {c_seq}:{c_hash}",
            r.disclosure_cutoff,
            r.records_checkpointed,
            c_seq = c.seq,
            c_hash = c.hash
        ),
        None => println!(
            "disclosures before {}: none left to checkpoint",
            r.disclosure_cutoff
        ),
    }
    if !r.dry_run {
        println!(
            "{verb} {} disclosure records and {} letters",
            r.purged.disclosures, r.purged.letters
        );
        match r.consents {
            Some(n) => println!(
                "{verb} {n} consent records that ended before {}",
                r.consent_cutoff
            ),
            None => println!("consents: no consent table in this store yet"),
        }
    }
}
