//! A simulated SMS-pumping attack against the real server and the sandbox, with the send guard
//! at its defaults: thousands of sends across premium-rate ranges and a burst to one number
//! prefix, shuffled into normal traffic from many countries. It reports how many attack sends
//! reached the upstream and how many legitimate sends were refused, and keeps
//! `docs/guard-simulation.md` equal to what it measured: set `GUARD_SIMULATION_WRITE=1` to
//! rewrite the file after a change. Without the guard every one of these sends reaches ITNIO:
//! each is a valid number, and nothing else stands in the way (`e2e_guard`'s dry-run test
//! shows a refused destination going through when the guard only counts).
//!
//! Everything is deterministic (a seeded generator; the counts do not depend on the order
//! concurrent calls land in), so the table only changes when the guard or the scenario does.

mod common;

use std::collections::HashSet;

use futures_util::{StreamExt, stream};
use itnio_otp_grpc::{
    guard::Policy,
    phone::{NumberType, PhoneRules},
    proto::v1 as pb,
};
use tonic::transport::Channel;

const SEND: &str = "POST /verification/send";
const TABLE: &str = "docs/guard-simulation.md";
/// Calls in flight at once, as from a botnet and a busy product together.
const CONCURRENCY: usize = 32;

const PREMIUM_SENDS: usize = 2000;
const BURST_SENDS: usize = 1000;
const LEGIT_USERS: usize = 300;
/// Every fourth legitimate user asks for the code twice.
const LEGIT_REPEAT_EVERY: usize = 4;

/// Mobile ranges legitimate users come from: country, E.164 start, digits after it.
const MOBILE_RANGES: [(&str, &str, usize); 20] = [
    ("GB", "447400", 6),
    ("US", "1415", 7),
    ("DE", "49151", 8),
    ("FR", "336", 8),
    ("IN", "919", 9),
    ("BR", "55119", 8),
    ("JP", "8190", 8),
    ("ES", "346", 8),
    ("IT", "393", 9),
    ("MX", "5255", 8),
    ("NG", "23480", 8),
    ("ZA", "2782", 7),
    ("AU", "614", 8),
    ("CA", "1416", 7),
    ("NL", "316", 8),
    ("SE", "4670", 7),
    ("PL", "4850", 7),
    ("TR", "905", 9),
    ("ID", "62812", 8),
    ("PH", "639", 9),
];

/// Premium-rate ranges the attack walks: E.164 start, digits after it.
const PREMIUM_RANGES: [(&str, usize); 5] = [
    ("44909", 7),
    ("43900", 6),
    ("3389", 7),
    ("61190", 7),
    ("39899", 6),
];

/// The prefix the burst hits: one UK mobile range, away from the legitimate users' ranges.
const BURST_RANGE: (&str, usize) = ("4479111", 5);

/// A seeded xorshift generator: the same scenario on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn digits(&mut self, start: &str, count: usize) -> String {
        let mut number = format!("+{start}");
        for _ in 0..count {
            number.push(char::from(b'0' + (self.next() % 10) as u8));
        }
        number
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Legit,
    Premium,
    Burst,
}

/// What happened to the sends of one kind.
#[derive(Default, Clone, Copy)]
struct Tally {
    sends: usize,
    /// A new code went out: ITNIO was called.
    upstream: usize,
    /// Answered with the pending verification (no new code, not an error).
    pending: usize,
    /// Refused with an error.
    refused: usize,
}

/// One sender: a number, sent to `times` times in a row.
#[derive(Clone)]
struct Attempt {
    kind: Kind,
    number: String,
    times: usize,
}

impl Attempt {
    fn once(kind: Kind, number: String) -> Self {
        Self {
            kind,
            number,
            times: 1,
        }
    }
}

/// The scenario: every sender, in the order they start.
fn scenario() -> Vec<Attempt> {
    let rules = PhoneRules::default();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut seen = HashSet::new();
    let mut legit = Vec::new();
    for _ in 0..LEGIT_USERS * 20 {
        if legit.len() == LEGIT_USERS {
            break;
        }
        let (_, start, digits) = MOBILE_RANGES[legit.len() % MOBILE_RANGES.len()];
        let number = rng.digits(start, digits);
        let mobile = rules.parse(&number).is_ok_and(|d| {
            matches!(
                d.number_type,
                NumberType::Mobile | NumberType::FixedLineOrMobile
            )
        });
        if mobile && seen.insert(number.clone()) {
            legit.push(number);
        }
    }
    assert_eq!(legit.len(), LEGIT_USERS, "the mobile ranges are mobile");
    // Every LEGIT_REPEAT_EVERY-th user asks again right after the first code was sent.
    let mut sends: Vec<Attempt> = legit
        .into_iter()
        .enumerate()
        .map(|(i, number)| Attempt {
            kind: Kind::Legit,
            number,
            times: if i % LEGIT_REPEAT_EVERY == 0 { 2 } else { 1 },
        })
        .collect();
    let mut premium = 0;
    for _ in 0..PREMIUM_SENDS * 10 {
        if premium == PREMIUM_SENDS {
            break;
        }
        let (start, digits) = PREMIUM_RANGES[premium % PREMIUM_RANGES.len()];
        let number = rng.digits(start, digits);
        // Only numbers the plans call premium rate: the attack pays itself with those.
        if rules
            .parse(&number)
            .is_ok_and(|d| d.number_type == NumberType::PremiumRate)
        {
            sends.push(Attempt::once(Kind::Premium, number));
            premium += 1;
        }
    }
    assert_eq!(
        premium, PREMIUM_SENDS,
        "the premium ranges are premium rate"
    );
    // Distinct numbers: a number drawn twice would be answered with its pending code or
    // refused depending on which of the two concurrent sends lands first.
    let mut burst = 0;
    while burst < BURST_SENDS {
        let number = rng.digits(BURST_RANGE.0, BURST_RANGE.1);
        if seen.insert(number.clone()) {
            sends.push(Attempt::once(Kind::Burst, number));
            burst += 1;
        }
    }
    for i in (1..sends.len()).rev() {
        let j = rng.below(i + 1);
        sends.swap(i, j);
    }
    sends
}

/// Runs every sender concurrently; returns each send's kind and outcome (`Ok(pending)`).
async fn run(
    channel: &Channel,
    ids: &(String, String),
    senders: Vec<Attempt>,
) -> Vec<(Kind, Result<bool, tonic::Code>)> {
    let outcomes: Vec<Vec<_>> = stream::iter(senders)
        .map(|sender| {
            let mut client =
                pb::verification_service_client::VerificationServiceClient::new(channel.clone());
            let request = pb::SendVerificationRequest {
                app_id: ids.0.clone(),
                template_id: ids.1.clone(),
                phone_number: sender.number,
                ..Default::default()
            };
            async move {
                let mut outcomes = Vec::new();
                for _ in 0..sender.times {
                    let outcome = client
                        .send_verification(request.clone())
                        .await
                        .map(|r| r.into_inner().pending)
                        .map_err(|status| status.code());
                    outcomes.push((sender.kind, outcome));
                }
                outcomes
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    outcomes.into_iter().flatten().collect()
}

fn tally(outcomes: &[(Kind, Result<bool, tonic::Code>)], kind: Kind) -> Tally {
    let mut tally = Tally::default();
    for (_, outcome) in outcomes.iter().filter(|(k, _)| *k == kind) {
        tally.sends += 1;
        match outcome {
            Ok(false) => tally.upstream += 1,
            Ok(true) => tally.pending += 1,
            Err(_) => tally.refused += 1,
        }
    }
    tally
}

/// Runs the whole scenario on a fresh server with `policy`; checks the sandbox saw exactly
/// the sends reported as sent.
async fn simulate(policy: Policy) -> [Tally; 3] {
    let app = common::spawn_app_custom(
        |sandbox| sandbox.max_verifications = 100_000,
        |config| config.guard = policy,
    )
    .await;
    let ids = app.app_and_template("pumping").await;
    let outcomes = run(&app.channel, &ids, scenario()).await;
    let tallies = [Kind::Legit, Kind::Premium, Kind::Burst].map(|kind| tally(&outcomes, kind));
    let upstream: usize = tallies.iter().map(|t| t.upstream).sum();
    assert_eq!(
        app.sandbox.request_count_for(SEND),
        upstream as u64,
        "the sandbox saw exactly the sends answered as sent"
    );
    app.shutdown().await;
    tallies
}

fn percent(part: usize, whole: usize) -> String {
    format!("{:.2} %", 100.0 * part as f64 / whole.max(1) as f64)
}

fn table(after: &[Tally; 3]) -> String {
    let mut out = String::from(
        "# Send guard: a simulated SMS-pumping attack\n\n\
         Generated by `tests/guard_pumping.rs` (part of `./scripts/test.sh`; rewrite with\n\
         `GUARD_SIMULATION_WRITE=1 cargo test --test guard_pumping`). The real server and the\n\
         sandbox, the guard at its [defaults](guard.md#defaults), one app, 32 calls in flight.\n\n",
    );
    out.push_str(&format!(
        "Scenario: {PREMIUM_SENDS} sends across premium-rate ranges of five countries \
         (+44 909, +43 900, +33 89, +61 190, +39 899), a burst of {BURST_SENDS} sends to random \
         numbers of one UK mobile prefix (+44 7911 1…), and {LEGIT_USERS} legitimate users on \
         mobiles in {} countries, every {LEGIT_REPEAT_EVERY}th asking twice in a row, all shuffled \
         together. Every number is valid, so without the guard every send reaches ITNIO.\n\n",
        MOBILE_RANGES.len()
    ));
    out.push_str("| traffic | sends | reached ITNIO without the guard | reached ITNIO with the guard | refused | answered with the pending code |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    let names = [
        "legitimate users",
        "attack: premium-rate ranges",
        "attack: burst to one prefix",
    ];
    for (name, a) in names.iter().zip(after) {
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            a.sends, a.sends, a.upstream, a.refused, a.pending
        ));
    }
    let attack_sends = after[1].sends + after[2].sends;
    let attack_after = after[1].upstream + after[2].upstream;
    out.push_str(&format!(
        "\nAttack sends reaching ITNIO: {attack_sends} of {attack_sends} (100 %) without the \
         guard, {attack_after} of {attack_sends} ({}) with it. Legitimate sends refused: {} of \
         {} (repeats get the code already on its way).\n",
        percent(attack_after, attack_sends),
        after[0].refused,
        after[0].sends,
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pumping_is_stopped_and_legitimate_users_are_not() {
    let after = simulate(Policy::default()).await;

    let attack_sends = after[1].sends + after[2].sends;
    let attack_through = after[1].upstream + after[2].upstream;
    assert_eq!(after[1].upstream, 0, "no premium-rate send gets through");
    assert!(
        attack_through * 100 < attack_sends,
        "{attack_through} of {attack_sends} attack sends reached ITNIO"
    );
    assert_eq!(after[0].refused, 0, "no legitimate send is refused");
    assert_eq!(
        after[0].upstream, LEGIT_USERS,
        "each user got one code; repeats got the pending one"
    );

    let generated = table(&after);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE);
    if std::env::var_os("GUARD_SIMULATION_WRITE").is_some() {
        std::fs::write(&path, &generated).expect("write the table");
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == generated,
        "{TABLE} is not what this run measured; rewrite it with \
         GUARD_SIMULATION_WRITE=1 cargo test --test guard_pumping\n\n{generated}"
    );
}
