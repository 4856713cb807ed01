//! `civicflow`: serve the platform, validate and test workflows, import the organisation,
//! verify the audit chain, measure throughput.

mod bench;
mod bench_dashboard;
mod bench_neighbour;
mod bench_scale;
mod bench_startup;
mod bench_tickets;
mod crash_check;
mod import;
mod loopback;
mod plugin;
mod scenario;
mod seed;
mod show;
mod validate;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The server allocates many small short-lived values per transition (JSON, events);
/// mimalloc handles that pattern markedly better than glibc malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "civicflow",
    version,
    about = "Configurable party-building and grid-governance workflows"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives: `sqlite://FILE` (default `./data/civicflow.db`) or `postgres://...`.
#[derive(clap::Args, Clone)]
struct DbArg {
    #[arg(long, env = "CIVICFLOW_DB", default_value = "sqlite://data/civicflow.db")]
    db: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: HTTP API, pages, timers and schedules.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[command(flatten)]
        db: DbArg,
        /// Load the shipped workflows and a demo organisation with people for each role.
        #[arg(long)]
        demo: bool,
        /// Folder of shipped workflows and the demo organisation (with --demo).
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
        /// Folder of shipped plugin packages (with --demo).
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
        /// Where compiled plugin modules are cached.
        #[arg(long, default_value = "data/plugin-cache")]
        plugin_cache: PathBuf,
        /// Send session cookies without `Secure`: only for a plain-HTTP intranet address
        /// (over HTTPS, or on localhost, leave it off).
        #[arg(long)]
        insecure_cookies: bool,
    },
    /// Check workflow files: syntax, schema and meaning. Exits non-zero on any error.
    Validate {
        /// Files or folders (every *.yaml except *.test.yaml).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run workflow scenario files (*.test.yaml) on an in-memory store with a virtual clock.
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Import units and people from CSV or .xlsx; a bad row imports nothing.
    Import {
        /// Units file: id, parent, kind, name, name_en.
        #[arg(long)]
        units: Option<PathBuf>,
        /// People file: id, name, unit, roles (role or role@unit, separated by ';'), phone, locale.
        #[arg(long)]
        people: Option<PathBuf>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Publish workflow files and overlays (*.overlay.yaml) to the database (new versions
    /// only). A base version that an overlay no longer applies to is refused, with the
    /// overlay's file and line, unless its unit is kept on the previous version.
    Publish {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Keep this unit (and its subtree) on the previous base version; repeatable.
        #[arg(long)]
        keep: Vec<String>,
        /// Who publishes, for the record.
        #[arg(long, default_value = "cli")]
        by: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Print the effective workflow at a unit (its base version with every overlay from the
    /// root down), each line an overlay wrote marked with its file and line.
    Show {
        workflow: String,
        #[arg(long)]
        unit: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// How the effective workflow differs between two units.
    Diff {
        workflow: String,
        /// Two units: `--unit A --unit B`.
        #[arg(long, num_args = 1, required = true)]
        unit: Vec<String>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Rule plugins: run, test, sign, publish, bind.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// API bearer tokens for integrations and admin tools.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Set a person's sign-in password, read from the first line of standard input.
    Password {
        #[arg(long)]
        person: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Working-day calendars: a unit's table of holidays and make-up working days per year.
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Write a consistent copy of the database while it serves (SQLite: `VACUUM INTO`;
    /// PostgreSQL: `pg_dump --format=custom`).
    Backup {
        /// The new backup file (never overwritten).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        db: DbArg,
    },
    /// Restore a backup into a database that holds no data yet, then verify every hash chain.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        db: DbArg,
    },
    /// Fill a database with a generated city (organisation and tickets) for the scale
    /// benchmark, through the register import and the runtime.
    Seed {
        /// The city dataset (the only kind so far).
        #[arg(long, required = true)]
        city: bool,
        /// 1 is the full city: 10,000 grids, 1 million residents, 2.1 million tickets.
        #[arg(long, default_value_t = 0.01)]
        scale: f64,
        /// Tickets in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Workflow folder to publish.
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
        /// What happens to each ticket: its workflow, starter and steps.
        #[arg(long, default_value = "tests/fixtures/city-tickets.yaml")]
        plan: PathBuf,
        #[command(flatten)]
        db: DbArg,
    },
    /// Time task lists, pages and steps over HTTP on a database `seed --city` filled.
    /// Durable tickets per second on the city's ticket process: in-process, over HTTP, or
    /// against a peer engine's server (tests/peers/run puts them side by side).
    BenchTickets {
        #[arg(long, default_value_t = 1000)]
        tickets: usize,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Through the JSON API of the server on loopback instead of runtime calls.
        #[arg(long)]
        http: bool,
        /// A peer engine's server (`http://127.0.0.1:PORT`) instead of civicflow.
        #[arg(long, requires = "peer_name")]
        peer: Option<String>,
        /// The peer's name, for the printed line.
        #[arg(long)]
        peer_name: Option<String>,
        /// The peer's start data and steps.
        #[arg(long, default_value = "tests/peers/steps.json")]
        peer_steps: PathBuf,
        #[arg(long, default_value = "tests/fixtures/city-tickets.yaml")]
        plan: PathBuf,
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
        /// Database (default: a new SQLite file in a temporary folder).
        #[arg(long)]
        db: Option<String>,
    },
    /// Start-up time of `civicflow serve` to /healthz with many workflows and plugins, with
    /// the compiled-module cache cold and warm.
    BenchStartup {
        /// Workflows and plugins each (the shipped ones plus renamed copies).
        #[arg(long, default_value_t = 50)]
        count: usize,
        /// Starts measured with each cache state.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
    },
    BenchScale {
        /// The scale the database was seeded at (for the figures' labels).
        #[arg(long, default_value_t = 0.01)]
        scale: f64,
        /// Requests per measurement.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// The plan the city was seeded with (its workflow and start are what is reported).
        #[arg(long, default_value = "tests/fixtures/city-tickets.yaml")]
        plan: PathBuf,
        #[command(flatten)]
        db: DbArg,
    },
    /// One community's hostile plugins (the gallery: endless loop, memory growth, deep
    /// recursion, huge output, bad JSON, log flood, wrong ABI, forbidden import, compile
    /// bomb, absurd limits) against another community's work over HTTP: its p50/p99 alone
    /// and beside them, and every hostile call checked as contained.
    /// The dashboard's figures for one street over a year of closed tickets on SQLite
    /// (written by SQL, not run through the engine): p50, p99 and max of `runs` calls.
    BenchDashboard {
        #[arg(long, default_value_t = 1_000_000)]
        tickets: usize,
        #[arg(long, default_value_t = 30)]
        runs: usize,
    },
    BenchNeighbour {
        /// The neighbour's levies (a start and a completion each) per measurement.
        #[arg(long, default_value_t = 600)]
        levies: usize,
        /// The neighbour's clients at once.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// The hostile community's clients at once.
        #[arg(long, default_value_t = 4)]
        hostile_clients: usize,
        /// Database (default: a new SQLite file in a temporary folder).
        #[arg(long)]
        db: Option<String>,
    },
    /// The server killed with SIGKILL at random moments while clients file reports with
    /// Idempotency-Keys, restarted each time; then every acknowledged report is checked to
    /// be stored exactly once, every key to give its first answer, every timer to have fired
    /// once and every hash chain to hold.
    CrashCheck {
        #[arg(long, default_value_t = 5)]
        kills: usize,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Reports in all (each with its own key).
        #[arg(long, default_value_t = 400)]
        reports: usize,
        /// Server processes on the one database (PostgreSQL only); each kill takes one of
        /// them, chosen at random, while the others carry on.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// An empty database (default: a new SQLite file in a temporary folder).
        #[arg(long)]
        db: Option<String>,
    },
    /// Measure durable transitions per second.
    Bench {
        /// Database to measure; default: a temporary SQLite file. PostgreSQL runs in a
        /// throw-away schema.
        #[arg(long)]
        db: Option<String>,
        /// Instances to run through (each makes three transitions).
        #[arg(long, default_value_t = 3000)]
        instances: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Nested units with an overlay each above the clerk's (0: the base workflow alone).
        #[arg(long, default_value_t = 0)]
        overlays: usize,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token for a person (shown once; only its hash is stored).
    Create {
        #[arg(long)]
        person: String,
        #[arg(long, default_value = "cli")]
        label: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Revoke a token at once (e.g. one that leaked).
    Revoke {
        #[arg(long)]
        token: String,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Subcommand)]
enum CalendarCommand {
    /// Upload year tables (*.calendar.yaml or *.calendar.csv) for a unit and everything below it;
    /// a year uploaded again replaces the earlier table.
    Upload {
        #[arg(long)]
        unit: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Every uploaded table: unit, year, days off, make-up working days.
    List {
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every instance's event hash chain; exit non-zero if any is broken.
    Verify {
        #[command(flatten)]
        db: DbArg,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            db,
            demo,
            workflows,
            plugins,
            plugin_cache,
            insecure_cookies,
        } => {
            let options = civicflow_server::ServeOptions {
                listen,
                db: db.db,
                demo,
                workflows,
                plugins,
                plugin_cache,
                insecure_cookies,
            };
            civicflow_server::serve(options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { paths } => validate::run(&paths),
        Command::Test { paths } => scenario::run(&paths).await,
        Command::Import { units, people, db } => import::run(&db.db, units.as_deref(), people.as_deref()).await,
        Command::Publish { paths, keep, by, db } => validate::publish(&db.db, &paths, &keep, &by).await,
        Command::Show { workflow, unit, db } => show::show(&db.db, &workflow, &unit).await,
        Command::Diff { workflow, unit, db } => match unit.as_slice() {
            [a, b] => show::diff(&db.db, &workflow, a, b).await,
            _ => Err(anyhow::anyhow!("diff compares two units: --unit A --unit B")),
        },
        Command::Plugin { command } => plugin::run(command).await,
        Command::Token {
            command: TokenCommand::Create { person, label, db },
        } => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let token = civicflow_store::Store::connect(&db.db, None)
                .await?
                .create_token(&person, &label, secret)
                .await?;
            println!("{token}");
            eprintln!("use it as `Authorization: Bearer {token}`; it is not shown again");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::Revoke { token, db },
        } => {
            let store = civicflow_store::Store::connect(&db.db, None).await?;
            store
                .person_for_token(token.trim())
                .await
                .map_err(|_| anyhow::anyhow!("no live token matches"))?;
            store.revoke_token(token.trim()).await?;
            println!("revoked");
            Ok(ExitCode::SUCCESS)
        }
        Command::Password { person, db } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let store = civicflow_store::Store::connect(&db.db, None).await?;
            store.set_password(&person, line.trim_end_matches(['\r', '\n'])).await?;
            eprintln!("password set for {person}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Calendar {
            command: CalendarCommand::Upload { unit, files, db },
        } => {
            // Every file is checked before any is stored.
            let mut tables = Vec::new();
            let mut bad = false;
            for f in &files {
                let text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                match civicflow_engine::calendar::YearTable::parse(&f.display().to_string(), &text) {
                    Ok(t) => tables.push(t),
                    Err(problems) => {
                        bad = true;
                        for p in problems {
                            println!("{p}");
                        }
                    }
                }
            }
            if bad {
                return Ok(ExitCode::FAILURE);
            }
            let store = civicflow_store::Store::connect(&db.db, None).await?;
            for t in &tables {
                store.upload_calendar(&unit, t, "cli", chrono::Utc::now()).await?;
                println!(
                    "{}: {} days off, {} make-up working days, for {unit} and below",
                    t.year,
                    t.holidays.len(),
                    t.workdays.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Calendar {
            command: CalendarCommand::List { db },
        } => {
            let store = civicflow_store::Store::connect(&db.db, None).await?;
            for c in store.calendars().await? {
                println!(
                    "{}\t{}\t{} days off\t{} make-up working days\t{}",
                    c.unit_id,
                    c.table.year,
                    c.table.holidays.len(),
                    c.table.workdays.len(),
                    c.table.time_zone.name()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { to, db } => {
            civicflow_store::backup::backup(&db.db, &to).await?;
            let size = std::fs::metadata(&to).map(|m| m.len()).unwrap_or(0);
            println!("backup written to {} ({size} bytes)", to.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { from, db } => {
            let restored = civicflow_store::backup::restore(&from, &db.db).await?;
            println!(
                "restored {}: {} instance(s) checked, {} broken",
                from.display(),
                restored.instances_checked,
                restored.broken_chains
            );
            Ok(if restored.broken_chains == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Audit {
            command: AuditCommand::Verify { db },
        } => {
            let store = civicflow_store::Store::connect(&db.db, None).await?;
            let (checked, broken) = store.verify_chains().await?;
            for b in &broken {
                println!("BROKEN instance {} at event {}: {}", b.instance_id, b.seq, b.reason);
            }
            println!("{checked} instance(s) checked, {} broken", broken.len());
            Ok(if broken.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Seed {
            city: _,
            scale,
            concurrency,
            workflows,
            plan,
            db,
        } => {
            seed::run(&db.db, scale, concurrency, &workflows, &plan).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchTickets {
            tickets,
            concurrency,
            http,
            peer,
            peer_name,
            peer_steps,
            plan,
            workflows,
            db,
        } => {
            let target = match (peer, peer_name) {
                (Some(url), Some(name)) => bench_tickets::Target::Peer {
                    name,
                    url,
                    steps: peer_steps,
                },
                _ if http => bench_tickets::Target::Http,
                _ => bench_tickets::Target::InProcess,
            };
            bench_tickets::run(target, db.as_deref(), tickets, concurrency, &plan, &workflows).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CrashCheck {
            kills,
            clients,
            reports,
            replicas,
            db,
        } => crash_check::run(db.as_deref(), kills, clients, reports, replicas).await,
        Command::BenchDashboard { tickets, runs } => bench_dashboard::run(tickets, runs.max(1)).await,
        Command::BenchNeighbour {
            levies,
            clients,
            hostile_clients,
            db,
        } => bench_neighbour::run(db.as_deref(), levies, clients, hostile_clients).await,
        Command::BenchStartup {
            count,
            runs,
            workflows,
            plugins,
        } => {
            bench_startup::run(count, runs, &workflows, &plugins).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchScale {
            scale,
            requests,
            plan,
            db,
        } => {
            bench_scale::run(&db.db, scale, requests.max(1), &plan).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            db,
            instances,
            concurrency,
            overlays,
        } => bench::run(db.as_deref(), instances, concurrency.max(1), overlays).await,
    }
}
