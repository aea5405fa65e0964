//! `report`: turns the records of one `benches/run` (JSON lines written by `load`, and by the
//! script for pgbench, seeding and memory) into `latest.json` and the markdown section of
//! `benches/README.md` between `<!-- load:begin -->` and `<!-- load:end -->`, setting each
//! figure beside the limit measured in the same run and marking each target met or not.
//!
//! Usage: `report RECORDS.jsonl README.md LATEST.json`.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;

use serde_json::{Value, json};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const BEGIN: &str = "<!-- load:begin -->";
const END: &str = "<!-- load:end -->";

/// The p99 every read must stay under at 32 clients, in milliseconds.
const READ_P99_MS: f64 = 5.0;
/// The RSS allowance above the data set, in KiB.
const RSS_ALLOWANCE_KIB: f64 = 100.0 * 1024.0;

/// What a scenario's throughput is held against.
enum Limit {
    /// The hello-world server at the same client count, with the least share to reach.
    Hello(f64),
    /// pgbench TPC-B-like at the same client count (PostgreSQL backends only).
    TpcB(f64),
    /// Raw argon2id at the same parallelism (one hash at a time for 1 client, as many at once as
    /// the host runs otherwise).
    Argon2(f64),
    /// Shown beside hello world, no target.
    HelloInfo,
    /// Nothing to compare with.
    None,
}

fn limit_for(scenario: &str, target: &str) -> Limit {
    match scenario {
        "product_by_id" => Limit::Hello(0.50),
        "product_list" | "category_products" => Limit::Hello(0.25),
        "search" => Limit::Hello(0.10),
        "add_to_cart" => Limit::Hello(0.20),
        "category_tree" => Limit::HelloInfo,
        "login" => Limit::Argon2(0.90),
        "checkout" if target.starts_with("pg") => Limit::TpcB(0.50),
        _ => Limit::None,
    }
}

fn is_read(scenario: &str) -> bool {
    matches!(
        scenario,
        "product_by_id" | "product_list" | "search" | "category_products" | "category_tree"
    )
}

fn label(scenario: &str) -> &str {
    match scenario {
        "product_by_id" => "product by id `GET /products/{id}`",
        "product_list" => "product list `GET /products?page&limit=20`",
        "search" => "search `GET /products?q=`",
        "category_products" => "category listing `GET /categories/{id}/products`",
        "category_tree" => "category tree `GET /categories`",
        "add_to_cart" => "add to cart `POST /cart/items`",
        "login" => "login `POST /auth/login`",
        "checkout" => "checkout `POST /orders`",
        other => other,
    }
}

/// `12,345` above 100, one decimal below.
fn num(x: f64) -> String {
    if x >= 100.0 {
        let digits = format!("{:.0}", x);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{x:.1}")
    }
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// Cores used by the server, the driver and everything else while the scenario was recorded.
fn cpu(r: &Value) -> String {
    let cores = |key| r[key].as_f64().map_or("?".to_owned(), |c| format!("{c:.2}"));
    format!(
        "{} / {} / {} / {}",
        cores("host_cores"),
        cores("driver_cores"),
        cores("database_cores"),
        cores("other_cores")
    )
}

/// Whether `r` is a hello-world window at `clients`.
fn is_hello(r: &Value, clients: u64) -> bool {
    s(r, "kind") == "http" && s(r, "target") == "hello" && r["clients"].as_u64() == Some(clients)
}

/// Whether `r` is a pgbench TPC-B-like run at `clients`.
fn is_tpcb(r: &Value, clients: u64) -> bool {
    s(r, "kind") == "pgbench" && s(r, "mode") == "tpcb" && r["clients"].as_u64() == Some(clients)
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The records, by kind.
struct Run {
    meta: Value,
    records: Vec<Value>,
}

impl Run {
    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.records.iter().filter(move |r| s(r, "kind") == kind)
    }

    /// The records before the `index`th (the limits measured before a scenario), latest first.
    fn latest_before(&self, index: usize) -> impl Iterator<Item = &Value> {
        self.records[..index.min(self.records.len())].iter().rev()
    }

    /// The `key` of the records `matching` measured last before the `index`th record and first
    /// after it within its section (before the next measurement of every limit), or of the one
    /// before alone when none came after: the VM's speed drifts within minutes, and a limit
    /// measured once judged a figure against another minute.
    fn around(&self, index: usize, key: &str, matching: impl Fn(&Value) -> bool) -> Option<f64> {
        let before = self.latest_before(index).find(|r| matching(r)).map(|r| f(r, key))?;
        let after = self.records[index + 1..]
            .iter()
            .take_while(|r| s(r, "kind") != "limits")
            .find(|r| matching(r))
            .map(|r| f(r, key));
        Some(after.map_or(before, |after| f64::midpoint(before, after)))
    }

    /// The hello-world rate the `index`th record is judged against: measured right before and
    /// right after its section.
    fn hello_around(&self, clients: u64, index: usize) -> Option<f64> {
        self.around(index, "rps", |r| is_hello(r, clients))
    }

    /// The TPC-B rate the `index`th record is judged against: measured right before and right
    /// after its section.
    fn tpcb_around(&self, clients: u64, index: usize) -> Option<f64> {
        self.around(index, "tps", |r| is_tpcb(r, clients))
    }

    /// The `key` of the records `matching` among records `from..to`, in order.
    fn between(&self, from: usize, to: usize, key: &str, matching: impl Fn(&Value) -> bool) -> Vec<f64> {
        self.records[from..to]
            .iter()
            .filter(|r| matching(r))
            .map(|r| f(r, key))
            .collect()
    }

    /// pgbench's rate in `mode` at `clients`, as measured last before the `before`th record.
    fn pgbench(&self, mode: &str, clients: u64, before: usize) -> Option<f64> {
        self.latest_before(before)
            .find(|r| s(r, "kind") == "pgbench" && s(r, "mode") == mode && r["clients"].as_u64() == Some(clients))
            .map(|r| f(r, "tps"))
    }

    /// The argon2 parallelism `clients` logins get: one hash at a time for one client, the most
    /// hashes at once measured otherwise.
    fn argon2_at_once(&self, clients: u64) -> u64 {
        let most = self
            .of_kind("argon2")
            .filter_map(|r| r["at_once"].as_u64())
            .max()
            .unwrap_or(1);
        if clients <= 1 { 1 } else { most.min(clients) }
    }

    /// The argon2 rate at the parallelism `clients` logins get, as measured last before the
    /// `before`th record.
    fn argon2(&self, clients: u64, before: usize) -> Option<(f64, u64)> {
        let at_once = self.argon2_at_once(clients);
        self.latest_before(before)
            .find(|r| s(r, "kind") == "argon2" && r["at_once"].as_u64() == Some(at_once))
            .map(|r| (f(r, "rate"), at_once))
    }

    /// The argon2 rate a login window (the `index`th record) is judged against: measured right
    /// before it and right after it at its parallelism.
    fn argon2_around(&self, clients: u64, index: usize) -> Option<(f64, u64)> {
        let at_once = self.argon2_at_once(clients);
        let rate = self.around(index, "rate", |r| {
            s(r, "kind") == "argon2" && r["at_once"].as_u64() == Some(at_once)
        })?;
        Some((rate, at_once))
    }

    /// Where each measurement of the limits starts (index of its marker) and what it precedes.
    fn sections(&self) -> Vec<(usize, String)> {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, r)| s(r, "kind") == "limits")
            .map(|(i, r)| (i, s(r, "section").to_owned()))
            .collect()
    }

    /// Backend/size pairs in the order they were run.
    fn targets(&self) -> Vec<(String, u64)> {
        let mut seen = Vec::new();
        for r in self.of_kind("http") {
            let key = (s(r, "target").to_owned(), r["size"].as_u64().unwrap_or(0));
            if key.0 != "hello" && !seen.contains(&key) {
                seen.push(key);
            }
        }
        seen
    }
}

/// Tallies the checks.
#[derive(Default)]
struct Checks {
    met: usize,
    missed: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> &'static str {
        if ok {
            self.met += 1;
            "met"
        } else {
            self.missed.push(what());
            "**not met**"
        }
    }
}

fn render(run: &Run) -> String {
    let mut md = String::new();
    let mut checks = Checks::default();
    let m = &run.meta;
    let _ = writeln!(md, "{BEGIN}");
    let _ = writeln!(
        md,
        "## Load test, {} — revision `{}`\n\nGenerated by `{}` ({} s in all). Host and \
         driver are separate processes on the same machine, over loopback; the driver (`load`) uses \
         one thread and one keep-alive HTTP/1.1 connection per client; each scenario runs {} s warm-up, \
         then {} s measured per client count. An error is any answer with an unexpected status.\n",
        s(m, "date"),
        s(m, "revision"),
        s(m, "command"),
        m["total_seconds"].as_u64().unwrap_or(0),
        m["warmup"].as_f64().unwrap_or(0.0),
        m["duration"].as_f64().unwrap_or(0.0),
    );
    let _ = writeln!(
        md,
        "Machine: {} cores ({}), {} GiB RAM, {}; {}. Host log level `RUST_LOG={}`. \
         \"cores host / driver / db / others\" is CPU time over the recorded window from `/proc`: \
         the server under test, the load driver, PostgreSQL and the MongoDB-wire server, and every \
         other process on the machine (a figure taken while others were busy is noisy).\n",
        m["nproc"].as_u64().unwrap_or(0),
        s(m, "cpu"),
        m["ram_gib"].as_u64().unwrap_or(0),
        s(m, "kernel"),
        s(m, "postgres"),
        s(m, "rust_log"),
    );

    // Limits of this machine: at the start, then again before each section.
    let start_end = run.sections().get(1).map_or(run.records.len(), |(index, _)| *index);
    let _ = writeln!(md, "### This machine's limits (same run)\n");
    let _ = writeln!(md, "| limit | 1 client | 32 clients |\n|---|---|---|");
    let hello: Vec<&Value> = run.records[..start_end]
        .iter()
        .filter(|r| s(r, "kind") == "http" && s(r, "target") == "hello")
        .collect();
    let cell = |r: Option<&&Value>| {
        r.map_or("—".to_owned(), |r| {
            format!(
                "{}/s (p50 {} ms, p99 {} ms; {}{})",
                num(f(r, "rps")),
                ms(f(r, "p50_ms")),
                ms(f(r, "p99_ms")),
                cpu(r),
                match r["errors"].as_u64() {
                    Some(0) | None => String::new(),
                    Some(e) => format!(", {e} errors"),
                }
            )
        })
    };
    let _ = writeln!(
        md,
        "| bare poem hello world `GET /` (`benches/src/bin/hello.rs`) | {} | {} |",
        cell(hello.iter().find(|r| r["clients"].as_u64() == Some(1))),
        cell(hello.iter().find(|r| r["clients"].as_u64() == Some(32))),
    );
    for (mode, name) in [
        ("tpcb", "pgbench TPC-B-like, scale 10, `-j 2`"),
        ("select", "pgbench select-only (`-S`)"),
    ] {
        let tps = |c| {
            run.pgbench(mode, c, start_end)
                .map_or("—".to_owned(), |t| format!("{} tps", num(t)))
        };
        let _ = writeln!(md, "| {name} | {} | {} |", tps(1), tps(32));
    }
    let argon: Vec<String> = run.records[..start_end]
        .iter()
        .filter(|r| s(r, "kind") == "argon2")
        .map(|r| {
            format!(
                "{} at once: {}/s (other processes used {:.2} cores meanwhile)",
                r["at_once"].as_u64().unwrap_or(0),
                num(f(r, "rate")),
                f(r, "other_cores")
            )
        })
        .collect();
    if let Some(r) = run.of_kind("argon2").next() {
        let _ = writeln!(
            md,
            "\nRaw argon2id at the host's cost (m = {} KiB, t = {}, p = {}): {}.\n",
            r["memory_kib"].as_u64().unwrap_or(0),
            r["iterations"].as_u64().unwrap_or(0),
            r["parallelism"].as_u64().unwrap_or(0),
            argon.join("; ")
        );
    }
    let sections = run.sections();
    if sections.len() > 1 {
        let _ = writeln!(
            md,
            "Measured again right before each section, hello world and TPC-B once more right after \
             it, \
             argon2id once more right before and right after each login window, at its \
             parallelism (these VMs' speed drifts from minute to minute; the argon2id column \
             shows the last rates); each scenario is judged against the mean of the hello-world \
             rates around its section, a login window against the mean of the two argon2id rates \
             around it, checkout against the mean of the TPC-B rates around its section:\n\n\
             | section | hello world before, 1 / 32 clients | hello world after | argon2id, 1 / {} at once | TPC-B before, 1 / 32 clients | TPC-B after |\n\
             |---|---|---|---|---|---|",
            run.argon2(32, run.records.len()).map_or(0, |(_, t)| t)
        );
        for (i, (index, name)) in sections.iter().enumerate() {
            let end = sections.get(i + 1).map_or(run.records.len(), |(next, _)| *next);
            let pair = |one: Option<f64>, many: Option<f64>, unit: &str| match (one, many) {
                (Some(a), Some(b)) => format!("{} / {}{unit}", num(a), num(b)),
                _ => "—".to_owned(),
            };
            // Only what this section measured itself.
            let fresh = |found: Option<f64>, kind: &str| {
                found.filter(|_| run.records[*index..end].iter().any(|r| s(r, "kind") == kind))
            };
            let hellos = |c| run.between(*index, end, "rps", |r| is_hello(r, c));
            let tpcbs = |c| run.between(*index, end, "tps", |r| is_tpcb(r, c));
            let (one, many) = (hellos(1), hellos(32));
            let (tpcb_one, tpcb_many) = (tpcbs(1), tpcbs(32));
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} |",
                pair(one.first().copied(), many.first().copied(), "/s"),
                pair(one.get(1).copied(), many.get(1).copied(), "/s"),
                pair(
                    fresh(run.argon2(1, end).map(|(r, _)| r), "argon2"),
                    fresh(run.argon2(32, end).map(|(r, _)| r), "argon2"),
                    "/s"
                ),
                pair(tpcb_one.first().copied(), tpcb_many.first().copied(), " tps"),
                pair(tpcb_one.get(1).copied(), tpcb_many.get(1).copied(), " tps"),
            );
        }
        let _ = writeln!(md);
    }

    // Each backend and size.
    for (target, size) in run.targets() {
        let seed = run
            .of_kind("seed")
            .find(|r| s(r, "target") == target && r["size"].as_u64() == Some(size))
            .map_or(String::new(), |r| format!(", seeded in {:.1} s", f(r, "seconds")));
        let _ = writeln!(md, "### `{target}`, {} products{seed}\n", num(size as f64));
        let _ = writeln!(
            md,
            "| scenario | clients | req/s | p50 ms | p99 ms | errors | host CPU µs/req | cores host / driver / db / others | share of the limit | target | verdict |\n\
             |---|---|---|---|---|---|---|---|---|---|---|"
        );
        for (index, r) in run
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| s(r, "kind") == "http" && s(r, "target") == target && r["size"].as_u64() == Some(size))
        {
            let scenario = s(r, "scenario");
            let clients = r["clients"].as_u64().unwrap_or(0);
            let (rps, p99, errors) = (f(r, "rps"), f(r, "p99_ms"), r["errors"].as_u64().unwrap_or(0));
            let mut share = "—".to_owned();
            let mut wanted = Vec::new();
            let mut ok = true;
            let mut judged = false;
            let mut against = |limit: Option<f64>, name: &str, min: Option<f64>| match limit {
                Some(l) if l > 0.0 => {
                    let ratio = rps / l;
                    share = format!("{:.0} % of {name}", ratio * 100.0);
                    if let Some(min) = min {
                        wanted.push(format!("≥ {:.0} %", min * 100.0));
                        ok &= ratio >= min;
                        judged = true;
                    }
                }
                _ => share = format!("no {name} figure"),
            };
            // The MongoDB-wire test server is a Python stand-in, not a real mongod: figures
            // on it are shown against the limits but not judged.
            let informative = target == "pg-mongo";
            match limit_for(scenario, &target) {
                Limit::Hello(min) => against(run.hello_around(clients, index), "hello world", Some(min)),
                Limit::HelloInfo => against(run.hello_around(clients, index), "hello world", None),
                Limit::TpcB(min) => against(run.tpcb_around(clients, index), "TPC-B", Some(min)),
                Limit::Argon2(min) => {
                    let (rate, at_once) = run
                        .argon2_around(clients, index)
                        .map_or((None, 0), |(r, n)| (Some(r), n));
                    against(rate, &format!("argon2, {at_once} at once"), Some(min));
                }
                Limit::None => {}
            }
            if is_read(scenario) && clients >= 32 {
                wanted.push(format!("p99 ≤ {READ_P99_MS} ms"));
                ok &= p99 <= READ_P99_MS;
                judged = true;
            }
            if informative {
                judged = false;
                wanted = vec!["none (test server)".to_owned()];
            }
            if judged {
                wanted.push("0 errors".to_owned());
                ok &= errors == 0;
            }
            let verdict = if judged {
                checks.check(ok, || format!("{target}/{size} {scenario} at {clients} clients"))
            } else {
                ""
            };
            let _ = writeln!(
                md,
                "| {} | {clients} | {} | {} | {} | {errors} | {} | {} | {share} | {} | {verdict} |",
                label(scenario),
                num(rps),
                ms(f(r, "p50_ms")),
                ms(p99),
                r["host_cpu_us_per_request"]
                    .as_f64()
                    .map_or("—".to_owned(), |u| format!("{u:.0}")),
                cpu(r),
                wanted.join(", "),
            );
        }
        let _ = writeln!(md);
    }

    // Latency at the largest catalog against the smallest, per backend.
    let mut sizes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (target, size) in run.targets() {
        sizes.entry(target).or_default().push(size);
    }
    let scaled: Vec<(String, u64, u64)> = sizes
        .into_iter()
        .filter_map(|(t, v)| Some((t, *v.iter().min()?, *v.iter().max()?)))
        .filter(|(_, lo, hi)| hi > lo)
        .collect();
    if !scaled.is_empty() {
        let _ = writeln!(
            md,
            "### Catalog size: p99 at the largest catalog within 2× of the smallest\n"
        );
        let _ = writeln!(
            md,
            "| backend | scenario | clients | p99 small | p99 large | ratio | verdict |\n|---|---|---|---|---|---|---|"
        );
        for (target, lo, hi) in scaled {
            for scenario in ["product_list", "search"] {
                for clients in [1u64, 32] {
                    let p99 = |size: u64| {
                        run.of_kind("http")
                            .find(|r| {
                                s(r, "target") == target
                                    && r["size"].as_u64() == Some(size)
                                    && s(r, "scenario") == scenario
                                    && r["clients"].as_u64() == Some(clients)
                            })
                            .map(|r| f(r, "p99_ms"))
                    };
                    if let (Some(a), Some(b)) = (p99(lo), p99(hi)) {
                        let ratio = b / a;
                        let verdict = checks.check(ratio <= 2.0, || {
                            format!("{target} {scenario} p99 at {hi} vs {lo} ({clients} clients)")
                        });
                        let _ = writeln!(
                            md,
                            "| `{target}` | {} | {clients} | {} ms ({}) | {} ms ({}) | {ratio:.1}× | {verdict} |",
                            label(scenario),
                            ms(a),
                            num(lo as f64),
                            ms(b),
                            num(hi as f64),
                        );
                    }
                }
            }
        }
        let _ = writeln!(md);
    }

    // Memory.
    let _ = writeln!(md, "### Host memory\n");
    let _ = writeln!(
        md,
        "Data set = RSS of the host seeded − RSS of the same backend started empty, both on starts of \
         their own whose allocator returns freed memory at once (`MIMALLOC_PURGE_DELAY=0`): with the \
         default, what seeding frees stays resident for a while and would count as data (compare \
         the host under load's RSS when it was ready). Judged: the highest RSS sampled (every 100 ms) \
         under load before the checkout scenario, whose orders are new data, not overhead; target: \
         ≤ 100 MiB + data set. The last columns show the highest RSS of the whole run, checkout \
         included, with the orders it stored, and VmHWM over the host's life (seeding included).\n"
    );
    let _ = writeln!(
        md,
        "| backend | products | RSS empty | RSS seeded | data set | host under load: RSS when ready | max RSS under load before checkout | allowed | verdict | max RSS with checkout (orders stored) | VmHWM |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in run.of_kind("memory") {
        let target = s(r, "target");
        let size = r["size"].as_u64().unwrap_or(0);
        let empty = run
            .of_kind("rss_empty")
            .find(|e| s(e, "target") == target)
            .map(|e| f(e, "kib"));
        let ready = run
            .of_kind("seed")
            .find(|e| s(e, "target") == target && e["size"].as_u64() == Some(size))
            .map_or_else(|| f(r, "rss_before_load_kib"), |e| f(e, "rss_kib"));
        // Runs before the seeded host had a start of its own took the host under load's.
        let seeded = run
            .of_kind("rss_seeded")
            .find(|e| s(e, "target") == target && e["size"].as_u64() == Some(size))
            .map_or(ready, |e| f(e, "kib"));
        let hwm = f(r, "hwm_kib");
        let judged = f(r, "rss_peak_before_orders_kib");
        let (data, allowed, verdict) = match empty {
            Some(empty) => {
                let data = (seeded - empty).max(0.0);
                let allowed = RSS_ALLOWANCE_KIB + data;
                let verdict = checks.check(judged <= allowed, || format!("{target}/{size} RSS under load"));
                (mib(data), mib(allowed), verdict)
            }
            None => ("—".to_owned(), "—".to_owned(), ""),
        };
        let _ = writeln!(
            md,
            "| `{target}` | {} | {} | {} | {data} | {} | {} | {allowed} | {verdict} | {} ({}) | {} |",
            num(size as f64),
            empty.map_or("—".to_owned(), mib),
            mib(seeded),
            mib(ready),
            mib(judged),
            mib(f(r, "rss_peak_under_load_kib")),
            num(f(r, "orders_placed")),
            mib(hwm),
        );
    }
    let _ = writeln!(md);

    let total = checks.met + checks.missed.len();
    let _ = writeln!(md, "### Targets\n\n{} of {total} checks met.", checks.met);
    if !checks.missed.is_empty() {
        let _ = writeln!(md, " Not met: {}.", checks.missed.join("; "));
    }
    let _ = writeln!(md, "\n{END}");
    md
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [records_path, readme_path, latest_path] = args.as_slice() else {
        return Err("usage: report RECORDS.jsonl README.md LATEST.json".into());
    };
    let text = std::fs::read_to_string(records_path).map_err(|e| format!("{records_path}: {e}"))?;
    let mut meta = Value::Null;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{records_path}:{}: {e}", i + 1))?;
        if s(&v, "kind") == "meta" {
            meta = v;
        } else {
            records.push(v);
        }
    }
    let run = Run { meta, records };
    let section = render(&run);
    let readme = std::fs::read_to_string(readme_path).map_err(|e| format!("{readme_path}: {e}"))?;
    let updated = match (readme.find(BEGIN), readme.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{}{}", &readme[..b], section.trim_end(), &readme[e + END.len()..]),
        _ => format!("{}\n\n{}", readme.trim_end(), section),
    };
    std::fs::write(readme_path, updated).map_err(|e| format!("{readme_path}: {e}"))?;
    let latest = json!({"meta": run.meta, "records": run.records});
    std::fs::write(latest_path, serde_json::to_string_pretty(&latest)?).map_err(|e| format!("{latest_path}: {e}"))?;
    print!("{section}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(clients: u64, rps: f64) -> Value {
        json!({"kind": "http", "target": "hello", "clients": clients, "rps": rps})
    }

    fn scenario() -> Value {
        json!({"kind": "http", "target": "memory", "scenario": "product_list", "clients": 32, "rps": 1.0})
    }

    fn argon2(at_once: u64, rate: f64) -> Value {
        json!({"kind": "argon2", "at_once": at_once, "rate": rate})
    }

    #[test]
    fn limits_are_the_means_of_the_rates_measured_around_what_they_judge() {
        let limits = |section: &str| json!({"kind": "limits", "section": section});
        let run = Run {
            meta: Value::Null,
            records: vec![
                limits("memory/1000"),
                hello(32, 100.0),
                scenario(), // 2: hello world before 100, after 80
                argon2(2, 10.0),
                json!({"kind": "http", "target": "memory", "scenario": "login", "clients": 32, "rps": 1.0}),
                argon2(2, 14.0), // 5: argon2 around the login at 4
                hello(32, 80.0),
                limits("pg-memory/1000"),
                hello(32, 60.0),
                json!({"kind": "pgbench", "mode": "tpcb", "clients": 32, "tps": 900.0}),
                json!({"kind": "pgbench", "mode": "select", "clients": 32, "tps": 5.0}),
                scenario(), // 11: the last section, measured before only
                json!({"kind": "pgbench", "mode": "tpcb", "clients": 32, "tps": 700.0}),
            ],
        };
        assert_eq!(run.hello_around(32, 2), Some(90.0));
        assert_eq!(run.hello_around(32, 11), Some(60.0), "nothing after: the rate before");
        assert_eq!(run.tpcb_around(32, 11), Some(800.0));
        assert_eq!(run.tpcb_around(32, 2), None, "no TPC-B before");
        assert_eq!(run.argon2_around(32, 4), Some((12.0, 2)));
        assert_eq!(run.between(0, 7, "rps", |r| is_hello(r, 32)), vec![100.0, 80.0]);
    }
}
