//! `load`: the load driver of `benches/run`, in its own process so the figures include the
//! network stack and the host pays for nothing the driver does.
//!
//! Every virtual user holds one keep-alive HTTP/1.1 connection (hyper's `client::conn::http1`
//! over a tokio `TcpStream`) and sends its next request as soon as the previous answer has been
//! read. The driver runs on ONE thread by default (`--threads`) so that on a small machine it
//! leaves the other cores to the server under test; the hello-world ceiling is driven the same
//! way, so the ratios compare like with like.
//!
//! Modes (each appends one JSON object per line to `--out`):
//! - `load http --base URL --target NAME --size N --scenarios a,b --clients 1,32 --duration S
//!   --warmup S [--drain S] [--server-pid PID] [--admin-email E --admin-password P]`: runs each scenario at
//!   each client count; `hello` is the only scenario for the hello-world server.
//! - `load argon2 --duration S`: the raw argon2id hash rate at the host's default cost, one
//!   hash at a time and as many at once as the host runs.

use std::collections::BTreeSet;
use std::error::Error;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use commerce_benches::{Samples, Summary};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

/// The password of every account the driver creates.
const PASSWORD: &str = "bench-password-123";
/// Distinct SKUs a virtual user cycles through when filling its cart (the cart keeps at most
/// 100 lines of at most 99 units).
const CART_SKUS: u64 = 10;
/// Adds after which a virtual user empties its cart (untimed), before a line reaches 99 units.
const CART_RESET_EVERY: u64 = CART_SKUS * 95;
/// SKUs given ample stock for the cart and checkout scenarios, spread across the catalog.
const STOCKED_SKUS: usize = 200;

/// Command-line options, `--name value` pairs.
struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self> {
        let mut pairs = Vec::new();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let value = args.next().ok_or_else(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_owned(), value));
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn req(&self, name: &str) -> Result<&str> {
        self.get(name).ok_or_else(|| format!("--{name} is required").into())
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: {v:?} is not a number").into()),
        }
    }

    fn list(&self, name: &str, default: &str) -> Vec<String> {
        self.get(name)
            .unwrap_or(default)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// SplitMix64: enough randomness to spread requests, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    }
}

/// One keep-alive connection; reconnects on the next request after a failure.
struct Conn {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A response: status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).map_err(|e| format!("bad JSON ({e}) in a {} answer", self.status).into())
    }

    /// The body as JSON when the status is `want`, an error naming both otherwise.
    fn expect(&self, want: u16, what: &str) -> Result<Value> {
        if self.status.as_u16() != want {
            return Err(format!(
                "{what}: status {} (expected {want}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
            .into());
        }
        self.json()
    }
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // Ends when the sender is dropped or the server closes; nothing to report.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| "no connection".into())
    }

    /// Sends one request and reads the whole answer.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let result = self.try_send(method, path, headers, body).await;
        if result.is_err() {
            // The connection may be half-way through an exchange: start afresh next time.
            self.sender = None;
        }
        result
    }

    async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let mut builder = Request::builder().method(method).uri(path).header("host", &self.host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = match body {
            Some(v) => {
                builder = builder.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body)?;
        let sender = self.connect().await?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Answer> {
        self.send(Method::GET, path, headers, None).await
    }
}

/// A user the driver registered.
#[derive(Clone)]
struct User {
    email: String,
    bearer: String,
}

/// What the scenarios draw from, gathered through the API before load.
#[derive(Default)]
struct Fixture {
    product_ids: Vec<String>,
    /// Pages of 20 in the whole catalog.
    list_pages: usize,
    words: Vec<String>,
    category_ids: Vec<String>,
    /// SKUs with ample stock.
    skus: Vec<String>,
    cart_users: Vec<User>,
    buy_users: Vec<User>,
    /// Distinguishes this process's idempotency keys from an earlier run's.
    run_id: u128,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Hello,
    ProductById,
    ProductList,
    Search,
    CategoryProducts,
    CategoryTree,
    AddToCart,
    Login,
    Checkout,
}

impl Scenario {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "hello" => Self::Hello,
            "product_by_id" => Self::ProductById,
            "product_list" => Self::ProductList,
            "search" => Self::Search,
            "category_products" => Self::CategoryProducts,
            "category_tree" => Self::CategoryTree,
            "add_to_cart" => Self::AddToCart,
            "login" => Self::Login,
            "checkout" => Self::Checkout,
            other => return Err(format!("unknown scenario {other:?}").into()),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::ProductById => "product_by_id",
            Self::ProductList => "product_list",
            Self::Search => "search",
            Self::CategoryProducts => "category_products",
            Self::CategoryTree => "category_tree",
            Self::AddToCart => "add_to_cart",
            Self::Login => "login",
            Self::Checkout => "checkout",
        }
    }

    fn needs_users(self) -> bool {
        matches!(self, Self::AddToCart | Self::Login | Self::Checkout)
    }
}

/// One virtual user during one scenario.
struct Worker {
    index: usize,
    clients: usize,
    conn: Conn,
    rng: Rng,
    fixture: Arc<Fixture>,
    done: u64,
}

/// The timed part of one step and whether its answer was the expected one.
struct Step {
    latency: Duration,
    ok: bool,
}

impl Worker {
    async fn timed_get(&mut self, path: &str, headers: &[(&str, &str)]) -> Step {
        let t = Instant::now();
        let ok = self
            .conn
            .get(path, headers)
            .await
            .is_ok_and(|a| a.status == StatusCode::OK);
        Step {
            latency: t.elapsed(),
            ok,
        }
    }

    /// A timed POST of a JSON body; ok when the answer has the `expected` status.
    async fn timed_post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
        expected: StatusCode,
    ) -> Step {
        let t = Instant::now();
        let ok = self
            .conn
            .send(Method::POST, path, headers, Some(body))
            .await
            .is_ok_and(|a| a.status == expected);
        Step {
            latency: t.elapsed(),
            ok,
        }
    }

    /// Empties this user's cart (untimed housekeeping, so lines never reach their limit).
    async fn empty_cart(&mut self, user: &User) -> Result<()> {
        let auth = [("authorization", user.bearer.as_str())];
        let cart = self.conn.get("/api/v1/cart", &auth).await?.expect(200, "GET /cart")?;
        let ids: Vec<String> = cart["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|line| line["id"].as_str().map(str::to_owned))
            .collect();
        for id in ids {
            let path = format!("/api/v1/cart/items/{id}");
            let answer = self.conn.send(Method::DELETE, &path, &auth, None).await?;
            if !answer.status.is_success() {
                return Err(format!("DELETE {path}: {}", answer.status).into());
            }
        }
        Ok(())
    }

    async fn step(&mut self, scenario: Scenario) -> Step {
        let f = self.fixture.clone();
        let n = self.done;
        self.done += 1;
        match scenario {
            Scenario::Hello => self.timed_get("/", &[]).await,
            Scenario::ProductById => {
                let id = &f.product_ids[self.rng.below(f.product_ids.len())];
                self.timed_get(&format!("/api/v1/products/{id}"), &[]).await
            }
            Scenario::ProductList => {
                let page = 1 + self.rng.below(f.list_pages);
                self.timed_get(&format!("/api/v1/products?page={page}&limit=20"), &[])
                    .await
            }
            Scenario::Search => {
                let word = &f.words[self.rng.below(f.words.len())];
                self.timed_get(&format!("/api/v1/products?q={word}&limit=20"), &[])
                    .await
            }
            Scenario::CategoryProducts => {
                let id = &f.category_ids[self.rng.below(f.category_ids.len())];
                self.timed_get(&format!("/api/v1/categories/{id}/products?limit=20"), &[])
                    .await
            }
            Scenario::CategoryTree => self.timed_get("/api/v1/categories", &[]).await,
            Scenario::Login => {
                let user = &f.cart_users[self.index % f.cart_users.len()];
                let body = json!({"email": user.email, "password": PASSWORD});
                self.timed_post("/api/v1/auth/login", &[], &body, StatusCode::OK).await
            }
            Scenario::AddToCart => {
                let user = f.cart_users[self.index % f.cart_users.len()].clone();
                if n.is_multiple_of(CART_RESET_EVERY) && self.empty_cart(&user).await.is_err() {
                    return Step {
                        latency: Duration::ZERO,
                        ok: false,
                    };
                }
                let sku = &f.skus[(self.index * CART_SKUS as usize + (n % CART_SKUS) as usize) % f.skus.len()];
                let body = json!({"sku": sku, "quantity": 1});
                self.timed_post(
                    "/api/v1/cart/items",
                    &[("authorization", &user.bearer)],
                    &body,
                    StatusCode::OK,
                )
                .await
            }
            Scenario::Checkout => {
                let user = &f.buy_users[self.index % f.buy_users.len()];
                let auth = ("authorization", user.bearer.as_str());
                let sku = &f.skus[self.rng.below(f.skus.len())];
                let body = json!({"sku": sku, "quantity": 1});
                let added = self
                    .timed_post("/api/v1/cart/items", &[auth], &body, StatusCode::OK)
                    .await;
                if !added.ok {
                    return added;
                }
                // Only the order is timed: adding the item is the cart scenario's figure.
                let key = format!("{:x}-{}-{}-{n}", f.run_id, self.clients, self.index);
                let headers = [auth, ("idempotency-key", key.as_str())];
                self.timed_post("/api/v1/orders", &headers, &json!({}), StatusCode::CREATED)
                    .await
            }
        }
    }
}

/// How long a scenario runs: unrecorded warm-up, recorded duration, and the most time given
/// to requests still in flight at the end.
#[derive(Clone, Copy)]
struct Window {
    warmup: Duration,
    duration: Duration,
    drain: Duration,
}

/// Runs `scenario` from `clients` virtual users: `warmup` unrecorded, then `duration`
/// recorded. A request still in flight at the end is not counted.
async fn run_scenario(
    addr: SocketAddr,
    fixture: Arc<Fixture>,
    scenario: Scenario,
    clients: usize,
    window: Window,
    host_pid: Option<u32>,
) -> (Summary, CpuSnapshot, CpuSnapshot) {
    let Window {
        warmup,
        duration,
        drain,
    } = window;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let workers = (0..clients).map(|index| {
        let mut worker = Worker {
            index,
            clients,
            conn: Conn::new(addr),
            rng: Rng(0x5EED ^ ((index as u64 + 1) << 20) ^ (clients as u64)),
            fixture: fixture.clone(),
            done: 0,
        };
        tokio::spawn(async move {
            let mut samples = Samples::default();
            while Instant::now() < end {
                // A request in flight at the end is still awaited (up to `drain`) but not
                // counted: abandoning it would leave a slow server busy with it during the
                // next scenario.
                match tokio::time::timeout_at((end + drain).into(), worker.step(scenario)).await {
                    Ok(step) => {
                        // Count it when its timed part ran inside the recorded window.
                        let finished = Instant::now();
                        if finished - step.latency >= measure_from && finished <= end {
                            samples.record(step.latency, step.ok);
                        }
                    }
                    Err(_) => break,
                }
            }
            samples
        })
    });
    let workers: Vec<_> = workers.collect();
    // CPU counters over the recorded window only.
    tokio::time::sleep_until(measure_from.into()).await;
    let before = CpuSnapshot::take(host_pid);
    tokio::time::sleep_until(end.into()).await;
    let after = CpuSnapshot::take(host_pid);
    let mut all = Samples::default();
    for joined in futures::future::join_all(workers).await {
        all.merge(joined.unwrap_or_default());
    }
    (all.summary(duration), before, after)
}

/// CPU time used so far, in clock ticks (USER_HZ): a process's user + system time from
/// `/proc/<pid>/stat` (`self` for the driver), or the whole machine's busy time from
/// `/proc/stat`.
#[derive(Clone, Copy, Default)]
struct CpuSnapshot {
    host: u64,
    driver: u64,
    /// Every PostgreSQL process and the MongoDB-wire test server: the databases' share.
    databases: u64,
    machine_busy: u64,
}

/// Ticks per second of the `/proc` CPU counters (USER_HZ, 100 on every Linux we run on).
const TICKS_PER_SECOND: f64 = 100.0;

fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces): state is field 3, utime 14,
    // stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks of the database servers: processes named `postgres` (server and backends) or
/// `secantusd*` (the MongoDB-wire test server). Processes that ended meanwhile are missed, so
/// their time shows up under "others".
fn database_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|entry| {
        let name = entry.ok()?.file_name().into_string().ok()?;
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).ok()?;
        let comm = stat.split_once('(')?.1.rsplit_once(')')?.0;
        (comm == "postgres" || comm.starts_with("secantusd")).then(|| process_ticks(&name))?
    })
    .sum()
}

fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let total: u64 = v.iter().take(8).sum();
    Some(total - v.get(3)? - v.get(4)?)
}

impl CpuSnapshot {
    fn take(host: Option<u32>) -> Self {
        Self {
            host: host.and_then(|p| process_ticks(&p.to_string())).unwrap_or(0),
            driver: process_ticks("self").unwrap_or(0),
            databases: database_ticks(),
            machine_busy: machine_busy_ticks().unwrap_or(0),
        }
    }

    /// Cores used by the host, the driver, the databases and everything else between `self`
    /// and `later`.
    fn cores_until(&self, later: &Self, wall: Duration) -> CoresUsed {
        let ticks = wall.as_secs_f64().max(1e-3) * TICKS_PER_SECOND;
        let host = later.host.saturating_sub(self.host);
        let driver = later.driver.saturating_sub(self.driver);
        let databases = later.databases.saturating_sub(self.databases);
        let others = later
            .machine_busy
            .saturating_sub(self.machine_busy)
            .saturating_sub(host + driver + databases);
        CoresUsed {
            host: host as f64 / ticks,
            driver: driver as f64 / ticks,
            databases: databases as f64 / ticks,
            others: others as f64 / ticks,
        }
    }
}

/// Average cores busy over a window, by who used them.
struct CoresUsed {
    host: f64,
    driver: f64,
    databases: f64,
    others: f64,
}

/// Resident memory figures of a process, in KiB, from `/proc/<pid>/status`.
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn append(out: &str, record: &Value) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(out)?;
    writeln!(file, "{record}")?;
    Ok(())
}

/// Collects ids, names, SKUs and categories through the public API.
async fn gather(conn: &mut Conn, fixture: &mut Fixture) -> Result<Vec<String>> {
    let first = conn.get("/api/v1/products?page=1&limit=100", &[]).await?;
    let first = first.expect(200, "GET /products")?;
    let total = first["total"].as_u64().ok_or("listing without a total")? as usize;
    if total == 0 {
        return Err("the catalog is empty: was it seeded?".into());
    }
    fixture.list_pages = total.div_ceil(20);
    let pages = total.div_ceil(100);
    // Up to ten pages spread evenly over the catalog, so ids and SKUs come from all of it.
    let picks: BTreeSet<usize> = (0..10.min(pages)).map(|i| 1 + i * pages / 10.min(pages)).collect();
    let mut skus = Vec::new();
    let mut words = BTreeSet::new();
    for page in picks {
        let body = if page == 1 {
            first.clone()
        } else {
            conn.get(&format!("/api/v1/products?page={page}&limit=100"), &[])
                .await?
                .expect(200, "GET /products")?
        };
        for product in body["items"].as_array().into_iter().flatten() {
            if let Some(id) = product["id"].as_str() {
                fixture.product_ids.push(id.to_owned());
            }
            for word in product["name"].as_str().unwrap_or_default().split_whitespace() {
                let word = word.to_lowercase();
                if word.len() >= 3 && word.chars().all(|c| c.is_ascii_alphabetic()) {
                    words.insert(word);
                }
            }
            for variant in product["variants"].as_array().into_iter().flatten() {
                if let Some(sku) = variant["sku"].as_str() {
                    skus.push(sku.to_owned());
                }
            }
        }
    }
    fixture.words = words.into_iter().collect();
    let tree = conn
        .get("/api/v1/categories", &[])
        .await?
        .expect(200, "GET /categories")?;
    let mut stack: Vec<&Value> = tree["items"].as_array().into_iter().flatten().collect();
    while let Some(node) = stack.pop() {
        if let Some(id) = node["id"].as_str() {
            fixture.category_ids.push(id.to_owned());
        }
        stack.extend(node["children"].as_array().into_iter().flatten());
    }
    if fixture.product_ids.is_empty() || fixture.words.is_empty() || fixture.category_ids.is_empty() {
        return Err("the listing gave no products, words or categories".into());
    }
    Ok(skus)
}

async fn login(conn: &mut Conn, email: &str, password: &str) -> Result<String> {
    let body = json!({"email": email, "password": password});
    let answer = conn.send(Method::POST, "/api/v1/auth/login", &[], Some(&body)).await?;
    let session = answer.expect(200, &format!("login as {email}"))?;
    let token = session["accessToken"]
        .as_str()
        .ok_or("login answer without accessToken")?;
    Ok(format!("Bearer {token}"))
}

/// Gives `STOCKED_SKUS` SKUs spread over the gathered ones ample stock (as the admin), so the
/// cart and checkout scenarios measure the engine rather than running out of the demo's stock.
async fn stock_up(conn: &mut Conn, fixture: &mut Fixture, all_skus: &[String], admin: &str) -> Result<()> {
    if all_skus.is_empty() {
        return Err("the listing gave no SKUs".into());
    }
    let step = (all_skus.len() / STOCKED_SKUS).max(1);
    for sku in all_skus.iter().step_by(step).take(STOCKED_SKUS) {
        let path = format!("/api/v1/admin/inventory/{sku}");
        let body = json!({"onHand": 10_000_000, "reason": "load test"});
        conn.send(Method::PUT, &path, &[("authorization", admin)], Some(&body))
            .await?
            .expect(200, &format!("PUT {path}"))?;
        fixture.skus.push(sku.clone());
    }
    Ok(())
}

async fn register(conn: &mut Conn, email: &str, with_address: bool) -> Result<User> {
    let body = json!({"email": email, "password": PASSWORD, "firstName": "Load", "lastName": "Tester"});
    let session = conn
        .send(Method::POST, "/api/v1/auth/register", &[], Some(&body))
        .await?
        .expect(201, &format!("register {email}"))?;
    let token = session["accessToken"]
        .as_str()
        .ok_or("register answer without accessToken")?;
    let user = User {
        email: email.to_owned(),
        bearer: format!("Bearer {token}"),
    };
    if with_address {
        let address = json!({"firstName": "Load", "lastName": "Tester", "line1": "1 Bench Road",
            "city": "Loadtown", "postalCode": "12345", "country": "US", "isDefault": true});
        conn.send(
            Method::POST,
            "/api/v1/users/addresses",
            &[("authorization", &user.bearer)],
            Some(&address),
        )
        .await?
        .expect(201, "POST /users/addresses")?;
    }
    Ok(user)
}

async fn http_mode(opts: &Opts) -> Result<()> {
    let base = opts.req("base")?;
    let addr: SocketAddr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|_| format!("--base {base:?}: expected http://IP:PORT"))?;
    let target = opts.req("target")?.to_owned();
    let size: u64 = opts.num("size", 0)?;
    let out = opts.req("out")?;
    let duration = Duration::from_secs_f64(opts.num("duration", 5.0)?);
    let warmup = Duration::from_secs_f64(opts.num("warmup", 1.0)?);
    let window = Window {
        warmup,
        duration,
        drain: Duration::from_secs_f64(opts.num("drain", 30.0)?),
    };
    let scenarios = opts
        .list("scenarios", "hello")
        .iter()
        .map(|s| Scenario::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let clients = opts
        .list("clients", "1,32")
        .iter()
        .map(|c| c.parse::<usize>().map_err(|_| format!("--clients: {c:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let max_clients = clients.iter().copied().max().unwrap_or(1);
    let pid: Option<u32> = opts.get("server-pid").map(str::parse).transpose()?;
    let rss_before = pid.and_then(|p| proc_kib(p, "VmRSS"));

    let mut fixture = Fixture {
        run_id: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos(),
        ..Fixture::default()
    };
    let mut conn = Conn::new(addr);
    if scenarios.iter().any(|s| *s != Scenario::Hello) {
        let started = Instant::now();
        let skus = gather(&mut conn, &mut fixture).await?;
        if scenarios.iter().any(|s| s.needs_users()) {
            let admin = login(&mut conn, opts.req("admin-email")?, opts.req("admin-password")?).await?;
            stock_up(&mut conn, &mut fixture, &skus, &admin).await?;
            for i in 0..max_clients {
                let tag = fixture.run_id % 1_000_000_007;
                fixture
                    .cart_users
                    .push(register(&mut conn, &format!("cart{i}-{tag}@bench.example"), false).await?);
                fixture
                    .buy_users
                    .push(register(&mut conn, &format!("buy{i}-{tag}@bench.example"), true).await?);
            }
        }
        eprintln!(
            "[load] {target}/{size}: {} ids, {} list pages, {} words, {} categories, {} stocked SKUs, {} users ({:.1}s)",
            fixture.product_ids.len(),
            fixture.list_pages,
            fixture.words.len(),
            fixture.category_ids.len(),
            fixture.skus.len(),
            fixture.cart_users.len() + fixture.buy_users.len(),
            started.elapsed().as_secs_f64()
        );
    }
    drop(conn);
    let fixture = Arc::new(fixture);

    // The server's resident memory, sampled while the load runs: the peak of the whole run, and
    // the peak before checkout, whose orders are new data rather than overhead.
    let peak_under_load = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let peak_before_orders = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let placing_orders = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = pid.map(|pid| {
        let peak = peak_under_load.clone();
        let before_orders = peak_before_orders.clone();
        let ordering = placing_orders.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = proc_kib(pid, "VmRSS") {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                    if !ordering.load(std::sync::atomic::Ordering::Relaxed) {
                        before_orders.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });

    let mut orders_placed = 0;
    for scenario in &scenarios {
        if *scenario == Scenario::Checkout {
            placing_orders.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        for &c in &clients {
            // Each login window is judged against the raw hash rate at its parallelism, measured
            // right before it and right after it with the host idle: that rate drifts from
            // minute to minute on a shared VM (by a third with two-lane hashes), and a rate
            // measured a minute earlier, or even ten seconds earlier, judged logins against
            // another machine (the report takes the mean of the two).
            let argon2_at_once = (*scenario == Scenario::Login && target != "hello").then(|| {
                let cost = commerce_core::services::HashCost::default();
                if c <= 1 { 1 } else { cost.hashes_at_once(cpus()).min(c) }
            });
            let argon2_secs = duration.as_secs_f64().min(3.0);
            if let Some(at_once) = argon2_at_once {
                raw_argon2(out, argon2_secs, &[at_once])?;
            }
            let (s, before, after) = run_scenario(addr, fixture.clone(), *scenario, c, window, pid).await;
            let cores = before.cores_until(&after, duration);
            let host_us_per_request = if s.requests > 0 && pid.is_some() {
                Some(cores.host * duration.as_secs_f64() * 1e6 / s.requests as f64)
            } else {
                None
            };
            eprintln!(
                "[load] {target}/{size} {:<18} {c:>3} clients: {s}  cores: host {:.2} driver {:.2} db {:.2} others {:.2}",
                scenario.name(),
                cores.host,
                cores.driver,
                cores.databases,
                cores.others
            );
            if *scenario == Scenario::Checkout {
                orders_placed += s.requests;
            }
            append(
                out,
                &json!({
                    "kind": "http", "target": target, "size": size, "scenario": scenario.name(),
                    "clients": c, "seconds": duration.as_secs_f64(), "requests": s.requests,
                    "errors": s.errors, "rps": s.per_second,
                    "p50_ms": s.p50.as_secs_f64() * 1e3, "p99_ms": s.p99.as_secs_f64() * 1e3,
                    "host_cores": pid.map(|_| cores.host), "driver_cores": cores.driver,
                    "database_cores": cores.databases, "other_cores": cores.others,
                    "host_cpu_us_per_request": host_us_per_request,
                }),
            )?;
            if let Some(at_once) = argon2_at_once {
                raw_argon2(out, argon2_secs, &[at_once])?;
            }
        }
    }
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    if let Some(pid) = pid.filter(|_| target != "hello") {
        append(
            out,
            &json!({
                "kind": "memory", "target": target, "size": size,
                "rss_before_load_kib": rss_before,
                "rss_peak_under_load_kib": peak_under_load.load(std::sync::atomic::Ordering::Relaxed),
                "rss_peak_before_orders_kib": peak_before_orders.load(std::sync::atomic::Ordering::Relaxed),
                "orders_placed": orders_placed,
                "hwm_kib": proc_kib(pid, "VmHWM"),
            }),
        )?;
    }
    Ok(())
}

/// The cores the host's hashing threads are sized from.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// The raw argon2id hash rate at the host's default cost: one hash at a time (one client's
/// logins), and as many at once as the host runs.
fn argon2_mode(opts: &Opts) -> Result<()> {
    let at_once = commerce_core::services::HashCost::default().hashes_at_once(cpus());
    let mut counts = vec![1, at_once];
    counts.dedup();
    raw_argon2(opts.req("out")?, opts.num("duration", 3.0)?, &counts)
}

/// Appends the raw argon2id hash rate at the host's default cost, `counts` hashes at once.
fn raw_argon2(out: &str, secs: f64, counts: &[usize]) -> Result<()> {
    let cost = commerce_core::services::HashCost::default();
    for &n in counts {
        let (before, started) = (CpuSnapshot::take(None), Instant::now());
        let rate = commerce_benches::raw_hash_rate(cost, n, secs)?;
        let used = before.cores_until(&CpuSnapshot::take(None), started.elapsed());
        let other_cores = used.databases + used.others;
        eprintln!("[load] raw argon2id, {n} hash(es) at once: {rate:.1} hashes/s (others used {other_cores:.2} cores)");
        append(
            out,
            &json!({"kind": "argon2", "at_once": n, "rate": rate, "memory_kib": cost.memory_kib,
                "iterations": cost.iterations, "parallelism": cost.parallelism,
                "other_cores": other_cores}),
        )?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let opts = Opts::parse(args)?;
    match mode.as_str() {
        "http" => {
            let threads: usize = opts.num("threads", 1)?;
            let runtime = if threads <= 1 {
                tokio::runtime::Builder::new_current_thread().enable_all().build()?
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()?
            };
            runtime.block_on(http_mode(&opts))
        }
        "argon2" => argon2_mode(&opts),
        _ => Err("usage: load http --base http://IP:PORT --target NAME --out FILE [...] | load argon2 --out FILE [--duration S]".into()),
    }
}
