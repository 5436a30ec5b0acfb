//! ldkd: an LDK node (the `ldk-node` crate) for escrowlab's regtest clusters.
//!
//! It runs one node with bitcoind's RPC as its chain source and serves a small JSON API on a
//! loopback port (no TLS, no auth: loopback only; `--api-host=0.0.0.0` inside a container,
//! whose port is published on the host's loopback). Every answer is JSON; an error is an HTTP
//! 4xx/5xx with `{"error": "..."}`. The log goes to `<datadir>/ldkd.log`, in lnd's level style
//! (`[INF]`, `[WRN]`, `[ERR]`, `[CRT]`) so the harness's log scan reads both alike.
//!
//! Endpoints (GET reads, POST acts):
//!   GET  /v1/info                 node id, addresses, alias, block height, synced
//!   GET  /v1/balances             on-chain spendable/total, lightning, anchor reserve, and per open
//!                                 channel what it holds and the HTLCs in flight on it
//!   POST /v1/address/new          a fresh on-chain address
//!   POST /v1/sync                 sync the wallets with the chain now
//!   GET  /v1/peers                peers and whether they are connected
//!   POST /v1/peers/connect        {node_id, address, persist?}
//!   POST /v1/peers/disconnect     {node_id} (forgets it as a persisted peer too)
//!   GET  /v1/channels             every channel
//!   POST /v1/channels/open        {node_id, address, capacity_sats, push_sats?, announce?}
//!   POST /v1/channels/close       {user_channel_id, counterparty_node_id, force?}
//!   GET  /v1/graph                channels in the gossip graph, with their policies
//!   POST /v1/invoices             {amount_msat, description?, expiry_secs?}
//!   POST /v1/invoices/hash        {payment_hash, amount_msat, description?, expiry_secs?}: held until claimed
//!   POST /v1/invoices/claim       {payment_hash, preimage, claimable_amount_msat?}
//!   POST /v1/invoices/fail        {payment_hash}
//!   POST /v1/payments/pay         {invoice, amount_msat?, max_total_cltv_expiry_delta?, max_path_count?,
//!                                  max_total_routing_fee_msat?}
//!   GET  /v1/payments             every payment
//!   GET  /v1/payments/<id>        one payment
//!   POST /v1/stop                 stop cleanly (so do SIGTERM and SIGINT)

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ldk_node::bitcoin::hashes::Hash;
use ldk_node::bitcoin::secp256k1::PublicKey;
use ldk_node::bitcoin::Network;
use ldk_node::lightning::ln::channelmanager::PaymentId;
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::lightning::routing::router::RouteParametersConfig;
use ldk_node::lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Description};
use ldk_node::lightning_types::payment::{PaymentHash, PaymentPreimage};
use ldk_node::logger::{LogLevel, LogRecord, LogWriter};
use ldk_node::payment::{PaymentDetails, PaymentDirection, PaymentKind, PaymentStatus};
use ldk_node::{Builder, ChannelDetails, Event, LightningBalance, Node, UserChannelId};
use serde_json::{json, Value};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
	STOP.store(true, Ordering::SeqCst);
}

// ---------------------------------------------------------------- logging

/// One log file, appended to by ldk-node's records, ldkd's own lines and panics.
struct FileLog {
	file: Mutex<File>,
	max_level: LogLevel,
}

fn now_utc() -> String {
	let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
	let secs = d.as_secs() as i64;
	let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
	// civil-from-days (Howard Hinnant's algorithm)
	let z = days + 719_468;
	let era = z.div_euclid(146_097);
	let doe = z - era * 146_097;
	let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
	let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	let mp = (5 * doy + 2) / 153;
	let day = doy - (153 * mp + 2) / 5 + 1;
	let month = if mp < 10 { mp + 3 } else { mp - 9 };
	let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
	format!(
		"{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
		year,
		month,
		day,
		rem / 3600,
		rem % 3600 / 60,
		rem % 60,
		d.subsec_millis()
	)
}

fn level_tag(level: LogLevel) -> &'static str {
	match level {
		LogLevel::Gossip | LogLevel::Trace => "TRC",
		LogLevel::Debug => "DBG",
		LogLevel::Info => "INF",
		LogLevel::Warn => "WRN",
		LogLevel::Error => "ERR",
	}
}

// Errors ldk-node logs on every regtest run that are not faults: bitcoind has no fee history
// to estimate from, and ldk-node falls back to 1 sat/vB by design on regtest. Logged as warnings.
const REGTEST_EXPECTED: &[&str] = &["Failed to retrieve fee rate estimates"];

impl FileLog {
	fn line(&self, tag: &str, source: &str, msg: &str) {
		let text = format!("{} [{}] {}: {}\n", now_utc(), tag, source, msg);
		if let Ok(mut f) = self.file.lock() {
			let _ = f.write_all(text.as_bytes());
		}
	}
}

impl LogWriter for FileLog {
	fn log<'a>(&self, record: LogRecord<'a>) {
		if record.level < self.max_level {
			return;
		}
		let msg = record.args.to_string();
		let mut tag = level_tag(record.level);
		if tag == "ERR" && REGTEST_EXPECTED.iter().any(|p| msg.contains(p)) {
			tag = "WRN";
		}
		let source = format!("{}:{}", record.module_path, record.line);
		self.line(tag, &source, &msg);
	}
}

// ---------------------------------------------------------------- arguments

struct Args {
	datadir: String,
	network: Network,
	listen: String,
	announce: Option<String>,
	api_host: String,
	api_port: u16,
	rpc_host: String,
	rpc_port: u16,
	rpc_user: String,
	rpc_password: String,
	alias: String,
	log_level: LogLevel,
}

const USAGE: &str = "usage: ldkd --datadir=DIR --listen=HOST:PORT --api-port=PORT \
--bitcoind-rpc-host=HOST --bitcoind-rpc-port=PORT --bitcoind-rpc-user=USER \
--bitcoind-rpc-password=PASS --alias=NAME [--network=regtest] [--announce=HOST:PORT] \
[--api-host=127.0.0.1] [--log-level=debug|info|warn|error]";

fn parse_args() -> Result<Args, String> {
	let mut kv: HashMap<String, String> = HashMap::new();
	let mut it = std::env::args().skip(1);
	while let Some(arg) = it.next() {
		if arg == "--help" || arg == "-h" {
			println!("{}", USAGE);
			std::process::exit(0);
		}
		if arg == "--version" {
			println!("ldkd {} (ldk-node 0.7.1)", env!("CARGO_PKG_VERSION"));
			std::process::exit(0);
		}
		let Some(body) = arg.strip_prefix("--") else {
			return Err(format!("unexpected argument {:?}", arg));
		};
		let (k, v) = match body.split_once('=') {
			Some((k, v)) => (k.to_string(), v.to_string()),
			None => {
				let v = it.next().ok_or_else(|| format!("--{} needs a value", body))?;
				(body.to_string(), v)
			},
		};
		kv.insert(k, v);
	}
	let mut take = |k: &str| kv.remove(k);
	let need = |v: Option<String>, k: &str| v.ok_or_else(|| format!("--{} is required", k));
	let port = |v: String, k: &str| v.parse::<u16>().map_err(|_| format!("--{}: not a port: {:?}", k, v));
	let network = match take("network").as_deref().unwrap_or("regtest") {
		"regtest" => Network::Regtest,
		"signet" => Network::Signet,
		"testnet" => Network::Testnet,
		other => return Err(format!("--network: {:?} is not one of regtest, signet, testnet", other)),
	};
	let log_level = match take("log-level").as_deref().unwrap_or("debug") {
		"trace" => LogLevel::Trace,
		"debug" => LogLevel::Debug,
		"info" => LogLevel::Info,
		"warn" => LogLevel::Warn,
		"error" => LogLevel::Error,
		other => return Err(format!("--log-level: {:?} is not one of trace, debug, info, warn, error", other)),
	};
	let args = Args {
		datadir: need(take("datadir"), "datadir")?,
		network,
		listen: need(take("listen"), "listen")?,
		announce: take("announce"),
		// The API has no authentication: loopback unless asked (a container's own namespace).
		api_host: take("api-host").unwrap_or_else(|| "127.0.0.1".into()),
		api_port: port(need(take("api-port"), "api-port")?, "api-port")?,
		rpc_host: take("bitcoind-rpc-host").unwrap_or_else(|| "127.0.0.1".into()),
		rpc_port: port(need(take("bitcoind-rpc-port"), "bitcoind-rpc-port")?, "bitcoind-rpc-port")?,
		rpc_user: need(take("bitcoind-rpc-user"), "bitcoind-rpc-user")?,
		rpc_password: need(take("bitcoind-rpc-password"), "bitcoind-rpc-password")?,
		alias: need(take("alias"), "alias")?,
		log_level,
	};
	if let Some(k) = kv.keys().next() {
		return Err(format!("unknown option --{}", k));
	}
	Ok(args)
}

// ---------------------------------------------------------------- helpers

/// One entry of ldk-node's `lightning_balances`: an open channel's own balance
/// (`claimable_on_channel_close`, what LND calls the local balance) and each HTLC in flight on it
/// (`htlc_out`: offered by us; `htlc_in`: offered to us, preimage unknown). Other kinds (a closing
/// channel's claims) carry only their kind, channel and amount.
fn lightning_balance_json(b: &LightningBalance) -> Value {
	match b {
		LightningBalance::ClaimableOnChannelClose {
			channel_id, counterparty_node_id, amount_satoshis, transaction_fee_satoshis, ..
		} => json!({
			"kind": "claimable_on_channel_close", "channel_id": hex(&channel_id.0),
			"counterparty_node_id": counterparty_node_id.to_string(), "amount_sats": amount_satoshis,
			"transaction_fee_sats": transaction_fee_satoshis,
		}),
		LightningBalance::MaybeTimeoutClaimableHTLC {
			channel_id, counterparty_node_id, amount_satoshis, claimable_height, payment_hash, outbound_payment, ..
		} => json!({
			"kind": "htlc_out", "channel_id": hex(&channel_id.0),
			"counterparty_node_id": counterparty_node_id.to_string(), "amount_sats": amount_satoshis,
			"expiry_height": claimable_height, "payment_hash": hex(&payment_hash.0), "outbound_payment": outbound_payment,
		}),
		LightningBalance::MaybePreimageClaimableHTLC {
			channel_id, counterparty_node_id, amount_satoshis, expiry_height, payment_hash, ..
		} => json!({
			"kind": "htlc_in", "channel_id": hex(&channel_id.0),
			"counterparty_node_id": counterparty_node_id.to_string(), "amount_sats": amount_satoshis,
			"expiry_height": expiry_height, "payment_hash": hex(&payment_hash.0),
		}),
		LightningBalance::ClaimableAwaitingConfirmations { channel_id, amount_satoshis, .. }
		| LightningBalance::ContentiousClaimable { channel_id, amount_satoshis, .. }
		| LightningBalance::CounterpartyRevokedOutputClaimable { channel_id, amount_satoshis, .. } => {
			json!({ "kind": "closing", "channel_id": hex(&channel_id.0), "amount_sats": amount_satoshis })
		},
	}
}

fn hex(bytes: &[u8]) -> String {
	bytes.iter().map(|b| format!("{:02x}", b)).collect()
}

fn unhex32(s: &str, what: &str) -> Result<[u8; 32], ApiError> {
	let s = s.trim();
	if s.len() != 64 || !s.is_ascii() {
		return Err(ApiError::bad(format!("{}: expected 64 hex characters, got {:?}", what, s)));
	}
	let mut out = [0u8; 32];
	for i in 0..32 {
		out[i] = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
			.map_err(|_| ApiError::bad(format!("{}: not hex: {:?}", what, s)))?;
	}
	Ok(out)
}

struct ApiError {
	status: u16,
	message: String,
}

impl ApiError {
	fn bad(message: impl Into<String>) -> Self {
		ApiError { status: 400, message: message.into() }
	}
	fn not_found(message: impl Into<String>) -> Self {
		ApiError { status: 404, message: message.into() }
	}
	/// A call ldk-node refused: 409 for what the request asked (bad amount, duplicate...),
	/// 500 for the node's own failures.
	fn node(call: &str, e: ldk_node::NodeError) -> Self {
		use ldk_node::NodeError as E;
		let status = match e {
			E::InvalidAmount
			| E::InvalidInvoice
			| E::InvalidPaymentHash
			| E::InvalidPaymentPreimage
			| E::InvalidPublicKey
			| E::InvalidSocketAddress
			| E::InvalidChannelId
			| E::InvalidAddress
			| E::DuplicatePayment
			| E::InsufficientFunds
			| E::ChannelCreationFailed
			| E::ChannelClosingFailed
			| E::PaymentSendingFailed
			| E::ConnectionFailed => 409,
			E::NotRunning => 503,
			_ => 500,
		};
		ApiError { status, message: format!("{}: {} ({:?})", call, e, e) }
	}
}

type ApiResult = Result<Value, ApiError>;

fn field<'a>(body: &'a Value, key: &str) -> Result<&'a Value, ApiError> {
	body.get(key).filter(|v| !v.is_null()).ok_or_else(|| ApiError::bad(format!("missing field {:?}", key)))
}

fn str_field<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiError> {
	field(body, key)?.as_str().ok_or_else(|| ApiError::bad(format!("{:?} must be a string", key)))
}

/// A whole number, given as a JSON number or a decimal string (as lnd's REST API sends int64).
fn u64_value(v: &Value, key: &str) -> Result<u64, ApiError> {
	let n = match v {
		Value::Number(n) => n.as_u64(),
		Value::String(s) => s.trim().parse::<u64>().ok(),
		_ => None,
	};
	n.ok_or_else(|| ApiError::bad(format!("{:?} must be a non-negative whole number, got {}", key, v)))
}

fn u64_field(body: &Value, key: &str) -> Result<u64, ApiError> {
	u64_value(field(body, key)?, key)
}

fn opt_u64(body: &Value, key: &str) -> Result<Option<u64>, ApiError> {
	match body.get(key) {
		None | Some(Value::Null) => Ok(None),
		Some(v) => u64_value(v, key).map(Some),
	}
}

fn opt_bool(body: &Value, key: &str, default: bool) -> Result<bool, ApiError> {
	match body.get(key) {
		None | Some(Value::Null) => Ok(default),
		Some(Value::Bool(b)) => Ok(*b),
		Some(v) => Err(ApiError::bad(format!("{:?} must be true or false, got {}", key, v))),
	}
}

fn pubkey(body: &Value, key: &str) -> Result<PublicKey, ApiError> {
	let s = str_field(body, key)?;
	PublicKey::from_str(s.trim()).map_err(|e| ApiError::bad(format!("{}: not a node id: {} ({:?})", key, e, s)))
}

fn socket_address(body: &Value, key: &str) -> Result<SocketAddress, ApiError> {
	let s = str_field(body, key)?;
	SocketAddress::from_str(s.trim()).map_err(|e| ApiError::bad(format!("{}: not a host:port: {} ({:?})", key, e, s)))
}

fn description(body: &Value) -> Result<Bolt11InvoiceDescription, ApiError> {
	let text = body.get("description").and_then(|v| v.as_str()).unwrap_or("").to_string();
	let d = Description::new(text).map_err(|e| ApiError::bad(format!("description: {}", e)))?;
	Ok(Bolt11InvoiceDescription::Direct(d))
}

fn expiry(body: &Value) -> Result<u32, ApiError> {
	let secs = opt_u64(body, "expiry_secs")?.unwrap_or(3600);
	u32::try_from(secs).map_err(|_| ApiError::bad("expiry_secs is too large"))
}

fn amount_msat(body: &Value) -> Result<u64, ApiError> {
	match (opt_u64(body, "amount_msat")?, opt_u64(body, "amount_sats")?) {
		(Some(m), None) => Ok(m),
		(None, Some(s)) => Ok(s * 1000),
		(Some(_), Some(_)) => Err(ApiError::bad("give amount_msat or amount_sats, not both")),
		(None, None) => Err(ApiError::bad("missing field \"amount_msat\" (or \"amount_sats\")")),
	}
}

fn invoice_json(invoice: &Bolt11Invoice) -> Value {
	let hash = invoice.payment_hash().to_byte_array();
	json!({
		"invoice": invoice.to_string(),
		"payment_hash": hex(&hash),
		"payment_id": hex(&hash),
		"amount_msat": invoice.amount_milli_satoshis(),
		"expiry_secs": invoice.expiry_time().as_secs(),
		"min_final_cltv_expiry_delta": invoice.min_final_cltv_expiry_delta(),
	})
}

// ---------------------------------------------------------------- state

/// What only events tell: a held payment's claimable amount and deadline, a failure's reason.
#[derive(Default, Clone)]
struct Extra {
	claimable_amount_msat: Option<u64>,
	claim_deadline: Option<u32>,
	failure_reason: Option<String>,
	received_amount_msat: Option<u64>,
}

struct Daemon {
	node: Arc<Node>,
	log: Arc<FileLog>,
	extra: Mutex<HashMap<[u8; 32], Extra>>,
	network: Network,
}

fn status_str(s: PaymentStatus) -> &'static str {
	match s {
		PaymentStatus::Pending => "pending",
		PaymentStatus::Succeeded => "succeeded",
		PaymentStatus::Failed => "failed",
	}
}

fn channel_json(c: &ChannelDetails) -> Value {
	json!({
		"channel_id": hex(&c.channel_id.0),
		"user_channel_id": c.user_channel_id.0.to_string(),
		"counterparty_node_id": c.counterparty_node_id.to_string(),
		"funding_txo": c.funding_txo.map(|o| o.to_string()),
		"short_channel_id": c.short_channel_id,
		"capacity_sats": c.channel_value_sats,
		"outbound_capacity_msat": c.outbound_capacity_msat,
		"inbound_capacity_msat": c.inbound_capacity_msat,
		"unspendable_punishment_reserve_sats": c.unspendable_punishment_reserve,
		"is_outbound": c.is_outbound,
		"is_channel_ready": c.is_channel_ready,
		"is_usable": c.is_usable,
		"is_announced": c.is_announced,
		"confirmations": c.confirmations,
		"confirmations_required": c.confirmations_required,
		"cltv_expiry_delta": c.cltv_expiry_delta,
		"feerate_sat_per_1000_weight": c.feerate_sat_per_1000_weight,
	})
}

impl Daemon {
	fn payment_json(&self, p: &PaymentDetails) -> Value {
		let (kind, hash, preimage) = match &p.kind {
			PaymentKind::Onchain { txid, .. } => ("onchain", Some(txid.to_string()), None),
			PaymentKind::Bolt11 { hash, preimage, .. } => ("bolt11", Some(hex(&hash.0)), preimage.map(|x| hex(&x.0))),
			PaymentKind::Bolt11Jit { hash, preimage, .. } => {
				("bolt11_jit", Some(hex(&hash.0)), preimage.map(|x| hex(&x.0)))
			},
			PaymentKind::Bolt12Offer { hash, preimage, .. } => {
				("bolt12_offer", hash.map(|h| hex(&h.0)), preimage.map(|x| hex(&x.0)))
			},
			PaymentKind::Bolt12Refund { hash, preimage, .. } => {
				("bolt12_refund", hash.map(|h| hex(&h.0)), preimage.map(|x| hex(&x.0)))
			},
			PaymentKind::Spontaneous { hash, preimage } => {
				("spontaneous", Some(hex(&hash.0)), preimage.map(|x| hex(&x.0)))
			},
		};
		let extra = self.extra.lock().unwrap().get(&p.id.0).cloned().unwrap_or_default();
		// A held (receive-for-hash) payment that arrived and waits for claim_for_hash.
		let held = p.direction == PaymentDirection::Inbound
			&& p.status == PaymentStatus::Pending
			&& extra.claimable_amount_msat.is_some();
		json!({
			"id": hex(&p.id.0),
			"kind": kind,
			"payment_hash": hash,
			"preimage": preimage,
			"direction": if p.direction == PaymentDirection::Inbound { "inbound" } else { "outbound" },
			"status": status_str(p.status),
			"amount_msat": p.amount_msat,
			"fee_paid_msat": p.fee_paid_msat,
			"latest_update_timestamp": p.latest_update_timestamp,
			"claimable": held,
			"claimable_amount_msat": extra.claimable_amount_msat,
			"claim_deadline": extra.claim_deadline,
			"received_amount_msat": extra.received_amount_msat,
			"failure_reason": extra.failure_reason,
		})
	}

	fn handle(&self, method: &str, path: &str, body: &Value) -> ApiResult {
		let node = &self.node;
		match (method, path) {
			("GET", "/v1/info") => {
				let st = node.status();
				let best = st.current_best_block;
				Ok(json!({
					"node_id": node.node_id().to_string(),
					"alias": self.alias(),
					"network": self.network.to_string(),
					"listening_addresses": node.listening_addresses().unwrap_or_default().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
					"announcement_addresses": node.announcement_addresses().unwrap_or_default().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
					"is_running": st.is_running,
					"block_height": best.height,
					"block_hash": best.block_hash.to_string(),
					"synced": st.latest_onchain_wallet_sync_timestamp.is_some() && st.latest_lightning_wallet_sync_timestamp.is_some(),
					"latest_onchain_wallet_sync_timestamp": st.latest_onchain_wallet_sync_timestamp,
					"latest_lightning_wallet_sync_timestamp": st.latest_lightning_wallet_sync_timestamp,
					"num_channels": node.list_channels().len(),
					"num_usable_channels": node.list_channels().iter().filter(|c| c.is_usable).count(),
					"num_peers": node.list_peers().iter().filter(|p| p.is_connected).count(),
					"version": format!("ldkd {} (ldk-node 0.7.1)", env!("CARGO_PKG_VERSION")),
				}))
			},
			("GET", "/v1/balances") => {
				let b = node.list_balances();
				let channels = node.list_channels();
				Ok(json!({
					"total_onchain_sats": b.total_onchain_balance_sats,
					"spendable_onchain_sats": b.spendable_onchain_balance_sats,
					"anchor_reserve_sats": b.total_anchor_channels_reserve_sats,
					"total_lightning_sats": b.total_lightning_balance_sats,
					"outbound_capacity_msat": channels.iter().map(|c| c.outbound_capacity_msat).sum::<u64>(),
					"inbound_capacity_msat": channels.iter().map(|c| c.inbound_capacity_msat).sum::<u64>(),
					"pending_sweep_count": b.pending_balances_from_channel_closures.len(),
					"lightning_balances": b.lightning_balances.iter().map(lightning_balance_json).collect::<Vec<_>>(),
				}))
			},
			("POST", "/v1/address/new") => {
				let addr = node.onchain_payment().new_address().map_err(|e| ApiError::node("new_address", e))?;
				Ok(json!({ "address": addr.to_string() }))
			},
			("POST", "/v1/sync") => {
				node.sync_wallets().map_err(|e| ApiError::node("sync_wallets", e))?;
				Ok(json!({ "synced": true, "block_height": node.status().current_best_block.height }))
			},
			("GET", "/v1/peers") => Ok(json!({
				"peers": node.list_peers().iter().map(|p| json!({
					"node_id": p.node_id.to_string(),
					"address": p.address.to_string(),
					"is_connected": p.is_connected,
					"is_persisted": p.is_persisted,
				})).collect::<Vec<_>>()
			})),
			("POST", "/v1/peers/connect") => {
				let id = pubkey(body, "node_id")?;
				let addr = socket_address(body, "address")?;
				let persist = opt_bool(body, "persist", true)?;
				node.connect(id, addr, persist).map_err(|e| ApiError::node("connect", e))?;
				Ok(json!({ "connected": true }))
			},
			("POST", "/v1/peers/disconnect") => {
				let id = pubkey(body, "node_id")?;
				node.disconnect(id).map_err(|e| ApiError::node("disconnect", e))?;
				Ok(json!({ "disconnected": true }))
			},
			("GET", "/v1/channels") => {
				Ok(json!({ "channels": node.list_channels().iter().map(channel_json).collect::<Vec<_>>() }))
			},
			("POST", "/v1/channels/open") => {
				let id = pubkey(body, "node_id")?;
				let addr = socket_address(body, "address")?;
				let capacity = u64_field(body, "capacity_sats")?;
				let push = opt_u64(body, "push_sats")?.unwrap_or(0);
				if push >= capacity {
					return Err(ApiError::bad(format!("push_sats ({}) must be below capacity_sats ({})", push, capacity)));
				}
				let push_msat = if push > 0 { Some(push * 1000) } else { None };
				let announce = opt_bool(body, "announce", true)?;
				let ucid = if announce {
					node.open_announced_channel(id, addr, capacity, push_msat, None)
						.map_err(|e| ApiError::node("open_announced_channel", e))?
				} else {
					node.open_channel(id, addr, capacity, push_msat, None)
						.map_err(|e| ApiError::node("open_channel", e))?
				};
				Ok(json!({ "user_channel_id": ucid.0.to_string() }))
			},
			("POST", "/v1/channels/close") => {
				let ucid_text = match field(body, "user_channel_id")? {
					Value::String(s) => s.clone(),
					v => v.to_string(),
				};
				let ucid = ucid_text
					.trim()
					.parse::<u128>()
					.map_err(|_| ApiError::bad(format!("user_channel_id: not a number: {:?}", ucid_text)))?;
				let peer = pubkey(body, "counterparty_node_id")?;
				if !node.list_channels().iter().any(|c| c.user_channel_id.0 == ucid && c.counterparty_node_id == peer) {
					return Err(ApiError::not_found(format!("no channel {} with {}", ucid, peer)));
				}
				if opt_bool(body, "force", false)? {
					node.force_close_channel(&UserChannelId(ucid), peer, None)
						.map_err(|e| ApiError::node("force_close_channel", e))?;
				} else {
					node.close_channel(&UserChannelId(ucid), peer).map_err(|e| ApiError::node("close_channel", e))?;
				}
				Ok(json!({ "closing": true }))
			},
			("GET", "/v1/graph") => {
				let graph = node.network_graph();
				let mut channels = Vec::new();
				for scid in graph.list_channels() {
					if let Some(info) = graph.channel(scid) {
						channels.push(json!({
							"short_channel_id": scid,
							"node_one": info.node_one.to_string(),
							"node_two": info.node_two.to_string(),
							"capacity_sats": info.capacity_sats,
							"one_to_two": info.one_to_two.as_ref().map(|u| json!({"enabled": u.enabled, "cltv_expiry_delta": u.cltv_expiry_delta})),
							"two_to_one": info.two_to_one.as_ref().map(|u| json!({"enabled": u.enabled, "cltv_expiry_delta": u.cltv_expiry_delta})),
						}));
					}
				}
				Ok(json!({ "channels": channels, "num_nodes": graph.list_nodes().len() }))
			},
			("POST", "/v1/invoices") => {
				let invoice = node
					.bolt11_payment()
					.receive(amount_msat(body)?, &description(body)?, expiry(body)?)
					.map_err(|e| ApiError::node("receive", e))?;
				Ok(invoice_json(&invoice))
			},
			("POST", "/v1/invoices/hash") => {
				let hash = PaymentHash(unhex32(str_field(body, "payment_hash")?, "payment_hash")?);
				let invoice = node
					.bolt11_payment()
					.receive_for_hash(amount_msat(body)?, &description(body)?, expiry(body)?, hash)
					.map_err(|e| ApiError::node("receive_for_hash", e))?;
				Ok(invoice_json(&invoice))
			},
			("POST", "/v1/invoices/claim") => {
				let hash = unhex32(str_field(body, "payment_hash")?, "payment_hash")?;
				let preimage = PaymentPreimage(unhex32(str_field(body, "preimage")?, "preimage")?);
				let claimable = match opt_u64(body, "claimable_amount_msat")? {
					Some(a) => a,
					None => self
						.extra
						.lock()
						.unwrap()
						.get(&hash)
						.and_then(|x| x.claimable_amount_msat)
						.ok_or_else(|| ApiError {
							status: 409,
							message: format!("claim_for_hash: no payment for hash {} has arrived yet (no PaymentClaimable event)", hex(&hash)),
						})?,
				};
				node.bolt11_payment()
					.claim_for_hash(PaymentHash(hash), claimable, preimage)
					.map_err(|e| ApiError::node("claim_for_hash", e))?;
				Ok(json!({ "claimed": true, "claimable_amount_msat": claimable }))
			},
			("POST", "/v1/invoices/fail") => {
				let hash = unhex32(str_field(body, "payment_hash")?, "payment_hash")?;
				node.bolt11_payment().fail_for_hash(PaymentHash(hash)).map_err(|e| ApiError::node("fail_for_hash", e))?;
				Ok(json!({ "failed": true }))
			},
			("POST", "/v1/payments/pay") => {
				let text = str_field(body, "invoice")?;
				let invoice = Bolt11Invoice::from_str(text.trim())
					.map_err(|e| ApiError::bad(format!("invoice: not a BOLT11 invoice: {}", e)))?;
				let mut params = RouteParametersConfig::default();
				let mut custom = false;
				if let Some(v) = opt_u64(body, "max_total_cltv_expiry_delta")? {
					params.max_total_cltv_expiry_delta =
						u32::try_from(v).map_err(|_| ApiError::bad("max_total_cltv_expiry_delta is too large"))?;
					custom = true;
				}
				if let Some(v) = opt_u64(body, "max_path_count")? {
					params.max_path_count = u8::try_from(v).map_err(|_| ApiError::bad("max_path_count is at most 255"))?;
					custom = true;
				}
				if let Some(v) = opt_u64(body, "max_total_routing_fee_msat")? {
					params.max_total_routing_fee_msat = Some(v);
					custom = true;
				}
				let params = if custom { Some(params) } else { None };
				let bolt11 = node.bolt11_payment();
				let id = match opt_u64(body, "amount_msat")? {
					Some(a) => bolt11.send_using_amount(&invoice, a, params).map_err(|e| ApiError::node("send_using_amount", e))?,
					None => {
						if invoice.amount_milli_satoshis().is_none() {
							return Err(ApiError::bad("the invoice has no amount: give amount_msat"));
						}
						bolt11.send(&invoice, params).map_err(|e| ApiError::node("send", e))?
					},
				};
				let payment = node.payment(&id).map(|p| self.payment_json(&p));
				Ok(json!({
					"payment_id": hex(&id.0),
					"payment_hash": hex(&invoice.payment_hash().to_byte_array()),
					"payment": payment,
				}))
			},
			("GET", "/v1/payments") => {
				let mut all = node.list_payments();
				all.sort_by_key(|p| p.latest_update_timestamp);
				Ok(json!({ "payments": all.iter().map(|p| self.payment_json(p)).collect::<Vec<_>>() }))
			},
			("GET", p) if p.starts_with("/v1/payments/") => {
				let id = PaymentId(unhex32(&p["/v1/payments/".len()..], "payment id")?);
				match node.payment(&id) {
					Some(p) => Ok(self.payment_json(&p)),
					None => Err(ApiError::not_found(format!("no payment with id {}", hex(&id.0)))),
				}
			},
			("POST", "/v1/stop") => {
				STOP.store(true, Ordering::SeqCst);
				Ok(json!({ "stopping": true }))
			},
			(_, p) if p.starts_with("/v1/") => {
				Err(ApiError { status: 404, message: format!("no endpoint {} {}", method, path) })
			},
			_ => Err(ApiError::not_found(format!("no endpoint {} {} (the API is under /v1/)", method, path))),
		}
	}

	fn alias(&self) -> Option<String> {
		self.node.node_alias().map(|a| {
			let bytes = a.0;
			let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
			String::from_utf8_lossy(&bytes[..end]).into_owned()
		})
	}

	/// Follow ldk-node's events: log each, and keep what the API reports from them.
	fn handle_event(&self, event: &Event) {
		let mut extra = self.extra.lock().unwrap();
		match event {
			Event::PaymentClaimable { payment_id, claimable_amount_msat, claim_deadline, .. } => {
				let x = extra.entry(payment_id.0).or_default();
				x.claimable_amount_msat = Some(*claimable_amount_msat);
				x.claim_deadline = *claim_deadline;
			},
			Event::PaymentReceived { payment_id, payment_hash, amount_msat, .. } => {
				let key = payment_id.map(|i| i.0).unwrap_or(payment_hash.0);
				extra.entry(key).or_default().received_amount_msat = Some(*amount_msat);
			},
			Event::PaymentFailed { payment_id, payment_hash, reason, .. } => {
				let key = payment_id.map(|i| i.0).or(payment_hash.map(|h| h.0));
				if let Some(key) = key {
					extra.entry(key).or_default().failure_reason =
						Some(reason.as_ref().map(|r| format!("{:?}", r)).unwrap_or_else(|| "unknown".into()));
				}
			},
			_ => {},
		}
	}
}

// ---------------------------------------------------------------- HTTP

fn respond(request: tiny_http::Request, status: u16, body: &Value) {
	let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap();
	let resp = tiny_http::Response::from_string(body.to_string()).with_status_code(status).with_header(header);
	let _ = request.respond(resp);
}

fn serve_one(daemon: &Daemon, mut request: tiny_http::Request) {
	let method = request.method().as_str().to_uppercase();
	let path = request.url().split('?').next().unwrap_or("").trim_end_matches('/').to_string();
	let mut raw = String::new();
	if let Err(e) = request.as_reader().read_to_string(&mut raw) {
		respond(request, 400, &json!({ "error": format!("cannot read the request body: {}", e) }));
		return;
	}
	let body: Value = if raw.trim().is_empty() {
		json!({})
	} else {
		match serde_json::from_str(&raw) {
			Ok(v @ Value::Object(_)) => v,
			Ok(_) => {
				respond(request, 400, &json!({ "error": "the request body must be a JSON object" }));
				return;
			},
			Err(e) => {
				respond(request, 400, &json!({ "error": format!("the request body is not JSON: {}", e) }));
				return;
			},
		}
	};
	let started = std::time::Instant::now();
	let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| daemon.handle(&method, &path, &body)));
	let (status, answer) = match result {
		Ok(Ok(v)) => (200, v),
		Ok(Err(e)) => (e.status, json!({ "error": e.message })),
		Err(_) => (500, json!({ "error": format!("{} {} panicked (see ldkd.log)", method, path) })),
	};
	let tag = if status >= 500 { "WRN" } else { "DBG" };
	if status >= 400 || method != "GET" {
		let what = answer.get("error").and_then(|e| e.as_str()).map(|e| format!(": {}", e)).unwrap_or_default();
		daemon.log.line(tag, "api", &format!("{} {} -> {} in {} ms{}", method, path, status, started.elapsed().as_millis(), what));
	}
	respond(request, status, &answer);
}

// ---------------------------------------------------------------- main

fn fail(log: Option<&FileLog>, msg: &str) -> ! {
	if let Some(log) = log {
		log.line("CRT", "ldkd", msg);
	}
	eprintln!("ldkd: {}", msg);
	std::process::exit(1);
}

fn main() {
	let args = match parse_args() {
		Ok(a) => a,
		Err(e) => {
			eprintln!("ldkd: {}\n{}", e, USAGE);
			std::process::exit(2);
		},
	};
	if let Err(e) = std::fs::create_dir_all(&args.datadir) {
		fail(None, &format!("cannot create --datadir {}: {}", args.datadir, e));
	}
	let log_path = format!("{}/ldkd.log", args.datadir);
	let file = match OpenOptions::new().create(true).append(true).open(&log_path) {
		Ok(f) => f,
		Err(e) => fail(None, &format!("cannot open the log {}: {}", log_path, e)),
	};
	let log = Arc::new(FileLog { file: Mutex::new(file), max_level: args.log_level });
	{
		let log = Arc::clone(&log);
		std::panic::set_hook(Box::new(move |info| {
			log.line("CRT", "ldkd", &format!("panic: {}", info));
		}));
	}
	unsafe {
		libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
		libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
	}

	let listen = SocketAddress::from_str(&args.listen)
		.unwrap_or_else(|e| fail(Some(&log), &format!("--listen {:?}: {}", args.listen, e)));
	let announce = match &args.announce {
		Some(a) => SocketAddress::from_str(a).unwrap_or_else(|e| fail(Some(&log), &format!("--announce {:?}: {}", a, e))),
		None => listen.clone(),
	};
	// Bind the API before the node starts: a port clash fails fast, before any chain work.
	let api_addr = format!("{}:{}", args.api_host, args.api_port);
	let server = match tiny_http::Server::http(&api_addr) {
		Ok(s) => Arc::new(s),
		Err(e) => fail(Some(&log), &format!("cannot listen on {} for the API: {} (address already in use?)", api_addr, e)),
	};

	// ldk-node binds p2p inside start() and reports a clash only as an invalid address: try it
	// first, so a clash reads "unable to bind" (the cluster picks other ports on that).
	if let Err(e) = std::net::TcpListener::bind(args.listen.as_str()) {
		fail(Some(&log), &format!("unable to bind p2p {}: {}", args.listen, e));
	}

	let mut builder = Builder::new();
	builder.set_network(args.network);
	builder.set_storage_dir_path(args.datadir.clone());
	builder.set_chain_source_bitcoind_rpc(args.rpc_host.clone(), args.rpc_port, args.rpc_user.clone(), args.rpc_password.clone());
	builder.set_custom_logger(Arc::clone(&log) as Arc<dyn LogWriter>);
	if let Err(e) = builder.set_listening_addresses(vec![listen.clone()]) {
		fail(Some(&log), &format!("--listen: {}", e));
	}
	if let Err(e) = builder.set_announcement_addresses(vec![announce.clone()]) {
		fail(Some(&log), &format!("--announce: {}", e));
	}
	if let Err(e) = builder.set_node_alias(args.alias.clone()) {
		fail(Some(&log), &format!("--alias {:?}: {}", args.alias, e));
	}
	let node = match builder.build() {
		Ok(n) => Arc::new(n),
		Err(e) => fail(Some(&log), &format!("cannot build the node in {}: {} ({:?})", args.datadir, e, e)),
	};
	if let Err(e) = node.start() {
		fail(Some(&log), &format!("cannot start the node (bitcoind RPC at {}:{}?): {} ({:?})", args.rpc_host, args.rpc_port, e, e));
	}
	let daemon = Arc::new(Daemon { node: Arc::clone(&node), log: Arc::clone(&log), extra: Mutex::new(HashMap::new()), network: args.network });
	log.line(
		"INF",
		"ldkd",
		&format!(
			"node {} started: p2p {} (announced {}), API http://{}, bitcoind RPC {}:{}, alias {}",
			node.node_id(),
			listen,
			announce,
			api_addr,
			args.rpc_host,
			args.rpc_port,
			args.alias
		),
	);

	// Events: each is logged, noted for the API, and marked handled.
	{
		let daemon = Arc::clone(&daemon);
		std::thread::Builder::new()
			.name("events".into())
			.spawn(move || loop {
				let event = daemon.node.wait_next_event();
				daemon.log.line("INF", "event", &format!("{:?}", event));
				daemon.handle_event(&event);
				if let Err(e) = daemon.node.event_handled() {
					daemon.log.line("ERR", "event", &format!("event_handled failed: {}", e));
				}
			})
			.expect("spawn the event thread");
	}

	// A few API workers: a slow call (connect, open) does not hold up reads.
	let mut workers = Vec::new();
	for i in 0..4 {
		let (server, daemon) = (Arc::clone(&server), Arc::clone(&daemon));
		workers.push(
			std::thread::Builder::new()
				.name(format!("api-{}", i))
				.spawn(move || {
					while !STOP.load(Ordering::SeqCst) {
						match server.recv_timeout(Duration::from_millis(200)) {
							Ok(Some(req)) => serve_one(&daemon, req),
							Ok(None) => {},
							Err(e) => {
								daemon.log.line("WRN", "api", &format!("accept failed: {}", e));
								std::thread::sleep(Duration::from_millis(100));
							},
						}
					}
				})
				.expect("spawn an API worker"),
		);
	}
	log.line("INF", "ldkd", &format!("API ready on http://{}", api_addr));
	while !STOP.load(Ordering::SeqCst) {
		std::thread::sleep(Duration::from_millis(100));
	}
	log.line("INF", "ldkd", "stopping");
	for w in workers {
		let _ = w.join();
	}
	match node.stop() {
		Ok(()) => log.line("INF", "ldkd", "stopped"),
		Err(e) => log.line("WRN", "ldkd", &format!("stop: {}", e)),
	}
	std::process::exit(0);
}
