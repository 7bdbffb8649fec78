##! Threat Bus for Zeek 7.2 and later: live intel from a Threat Bus into the
##! Intel framework, and matches of that intel back to the bus as sightings.
##!
##! Zeek listens for WebSocket clients (Cluster::listen_websocket) and the bus
##! dials in: ws://<zeek>:27759/v1/messages/json, or wss:// with TLS. When the
##! bus has connected, this script asks it for intel on intel_topic, with a
##! snapshot of what the bus saw in the last snapshot_intel; the bus answers
##! with subscription_acknowledged and then sends intel events, which are
##! inserted into (or removed from) the Intel framework with source
##! "threatbus" and the indicator's STIX id as description. Intel::match of
##! such an item is reported back as a sighting, throttled per item.
##!
##! Load it on the manager of a cluster, or on a standalone Zeek:
##!
##!     @load /path/to/threatbus.zeek
##!     redef Tenzir::websocket_address = 0.0.0.0;
##!     redef Tenzir::snapshot_intel = 30 days;
##!
##! On other cluster nodes it does nothing. The record layouts and event
##! signatures below are the wire contract with the bus: keep the field order.
##!
##! Zeek 5.0 to 7.1 have a WebSocket API too, but no Cluster::listen_websocket
##! and no event when a client connects; see the plugin's README for the few
##! lines to change there.

@load base/frameworks/cluster
@load base/frameworks/intel
@load base/frameworks/reporter

module Tenzir;

export {
	## An intel item as Threat Bus sends it. The bus writes exactly these
	## fields, in this order.
	type Intelligence: record {
		## When the indicator was created.
		ts: time;
		## The indicator's STIX id; sightings report it back.
		id: string;
		## The Intel::Type without its module: ADDR, SUBNET, URL, SOFTWARE,
		## EMAIL, DOMAIN, USER_NAME, CERT_HASH, FILE_HASH or FILE_NAME.
		intel_type: string;
		## The value to match, e.g. "evil.com".
		indicator: string;
		## ADD or REMOVE.
		operation: string;
	};

	## Start the WebSocket server the bus dials. Set it to F where another
	## script already listens (zeekctl's UseWebSocket = 1 does on the
	## manager, on port 27759).
	const listen_websocket = T &redef;
	## The address the WebSocket server listens on.
	const websocket_address = 127.0.0.1 &redef;
	## The WebSocket server's port; 27759 is zeekctl's WebSocketPort.
	const websocket_port = 27759/tcp &redef;
	## With both set, the WebSocket server speaks TLS (the bus dials wss://).
	const websocket_cert_file = "" &redef;
	const websocket_key_file = "" &redef;
	## When set (with TLS), clients must present a certificate signed by
	## this CA: the bus's cert_file and key_file.
	const websocket_client_ca_file = "" &redef;

	## The bus topic this Zeek wants: STIX indicators.
	option intel_topic = "stix2/indicator" &redef;
	## How far back the bus should look when this Zeek subscribes, e.g.
	## 30 days; 0 sec asks for no snapshot.
	option snapshot_intel = 0 sec &redef;
	## Send the subscription again this often until the bus acknowledges it.
	option resubscribe_interval = 10 sec &redef;
	## Report matches of Threat Bus intel as sightings.
	option report_sightings = T &redef;
	## An intel item matching more often than this within a second is
	## reported once more with noisy = T, then not again until the second
	## is over. 0 reports every match as not noisy.
	option noisy_intel_threshold = 100 &redef;
	## Log every intel item inserted or removed to reporter.log.
	option log_operations = F &redef;

	## The topics of the Threat Bus protocol.
	const management_topic = "threatbus/manage";
	const sighting_topic = "stix2/sighting";
	## The Intel framework source (and meta url) of Threat Bus intel.
	const intel_source = "threatbus";

	## bus → Zeek, on the p2p topic: insert or remove an intel item.
	global intel: event(item: Intelligence);
	## Zeek → bus, on sighting_topic: an item of ours matched at ts.
	global sighting: event(ts: time, intel_id: string, context: table[string] of any);
	## Zeek → bus, on management_topic: send me topic, and a snapshot.
	global subscribe: event(topic: string, snapshot_intel: interval);
	## bus → Zeek, on management_topic: intel now comes on p2p_topic.
	global subscription_acknowledged: event(p2p_topic: string);
	## Zeek → bus, on management_topic: end the subscription of topic (a
	## p2p topic).
	global unsubscribe: event(topic: string);

	## The p2p topic of the current subscription; "" until acknowledged.
	global current_p2p_topic = "";
}

# Only the node that talks to the bus does anything: the manager, or a
# standalone Zeek. Intel::match is raised there too.
@if ( ! Cluster::is_enabled() || Cluster::local_node_type() == Cluster::MANAGER )

# The ids of the connected WebSocket clients that are Threat Buses: they
# subscribe to the management topic in their handshake.
global buses: set[string];
global acknowledged = F;

global resubscribe: event();

# The Intel framework's types by the names the bus sends.
global intel_types: table[string] of Intel::Type = {
	["ADDR"] = Intel::ADDR,
	["SUBNET"] = Intel::SUBNET,
	["URL"] = Intel::URL,
	["SOFTWARE"] = Intel::SOFTWARE,
	["EMAIL"] = Intel::EMAIL,
	["DOMAIN"] = Intel::DOMAIN,
	["USER_NAME"] = Intel::USER_NAME,
	["CERT_HASH"] = Intel::CERT_HASH,
	["PUBKEY_HASH"] = Intel::PUBKEY_HASH,
	["FILE_HASH"] = Intel::FILE_HASH,
	["FILE_NAME"] = Intel::FILE_NAME,
};

# Matches of one intel id in one second of network time, for the noisy
# throttle. The second is kept in the entry, not left to &create_expire:
# Zeek removes expired entries only every table_expire_interval (10 secs by
# default), so a 1 sec expiry would count matches over up to ten seconds
# and flag an item that matches a tenth as often as the threshold. The
# expiry only frees the entries of items that stopped matching.
type MatchWindow: record {
	second: double;
	n: count;
};
global match_windows: table[string] of MatchWindow &read_expire=1 min;

function send_subscribe()
	{
	Reporter::info(fmt("threatbus: asking for %s with a snapshot of %s", intel_topic, snapshot_intel));
	Cluster::publish(management_topic, subscribe, intel_topic, snapshot_intel);
	}

event resubscribe()
	{
	if ( |buses| == 0 || acknowledged )
		return;
	send_subscribe();
	schedule resubscribe_interval { resubscribe() };
	}

event zeek_init()
	{
	Cluster::subscribe(management_topic);
	# Every p2p topic the bus hands out starts with intel_topic. Holding the
	# prefix from the start means intel the bus sends right after its
	# acknowledgement cannot race our subscription to the p2p topic.
	Cluster::subscribe(intel_topic);

	if ( ! listen_websocket )
		return;
	local opts = Cluster::WebSocketServerOptions($listen_addr=websocket_address, $listen_port=websocket_port);
	if ( websocket_cert_file != "" )
		opts$tls_options = Cluster::WebSocketTLSOptions($cert_file=websocket_cert_file,
		    $key_file=websocket_key_file,
		    $enable_peer_verification=(websocket_client_ca_file != ""),
		    $ca_file=websocket_client_ca_file);
	if ( Cluster::listen_websocket(opts) )
		Reporter::info(fmt("threatbus: waiting for the bus on %s:%s", websocket_address, websocket_port));
	else
		Reporter::error(fmt("threatbus: cannot listen for the bus on %s:%s", websocket_address, websocket_port));
	}

function is_bus(subscriptions: string_vec): bool
	{
	for ( i in subscriptions )
		if ( subscriptions[i] == management_topic )
			return T;
	return F;
	}

event Cluster::websocket_client_added(info: Cluster::EndpointInfo, subscriptions: string_vec)
	{
	if ( ! is_bus(subscriptions) )
		return;
	add buses[info$id];
	acknowledged = F;
	Reporter::info(fmt("threatbus: bus %s connected from %s", info$id, info$network$address));
	event resubscribe();
	}

event Cluster::websocket_client_lost(info: Cluster::EndpointInfo)
	{
	if ( info$id !in buses )
		return;
	delete buses[info$id];
	if ( |buses| == 0 )
		acknowledged = F;
	Reporter::info(fmt("threatbus: bus %s disconnected", info$id));
	}

event subscription_acknowledged(p2p_topic: string)
	{
	if ( current_p2p_topic != "" && current_p2p_topic != p2p_topic )
		Cluster::unsubscribe(current_p2p_topic);
	current_p2p_topic = p2p_topic;
	acknowledged = T;
	Cluster::subscribe(p2p_topic);
	Reporter::info(fmt("threatbus: subscribed; intel arrives on %s", p2p_topic));
	}

event intel(item: Intelligence)
	{
	if ( item$intel_type !in intel_types )
		{
		Reporter::warning(fmt("threatbus: ignoring %s: unknown intel type %s", item$id, item$intel_type));
		return;
		}
	local it = Intel::Item($indicator=item$indicator,
	    $indicator_type=intel_types[item$intel_type],
	    $meta=Intel::MetaData($source=intel_source, $desc=item$id, $url=intel_source));
	if ( item$operation == "ADD" )
		Intel::insert(it);
	else if ( item$operation == "REMOVE" )
		# Only our metadata goes: the indicator stays if another source
		# has it too.
		Intel::remove(it);
	else
		{
		Reporter::warning(fmt("threatbus: ignoring %s: unknown operation %s", item$id, item$operation));
		return;
		}
	if ( log_operations )
		Reporter::info(fmt("threatbus: %s %s %s (%s)", item$operation, item$intel_type, item$indicator, item$id));
	}

event Intel::match(s: Intel::Seen, items: set[Intel::Item])
	{
	if ( ! report_sightings )
		return;
	for ( item in items )
		{
		if ( item$meta$source != intel_source || ! item$meta?$desc )
			next;
		local intel_id = item$meta$desc;
		local second = floor(time_to_double(network_time()));
		if ( intel_id !in match_windows || match_windows[intel_id]$second != second )
			match_windows[intel_id] = MatchWindow($second=second, $n=0);
		local w = match_windows[intel_id];
		w$n += 1;
		local n = w$n;
		if ( noisy_intel_threshold > 0 && n > noisy_intel_threshold + 1 )
			next; # reported as noisy in this second already
		local context: table[string] of any;
		context["noisy"] = noisy_intel_threshold > 0 && n > noisy_intel_threshold;
		Cluster::publish(sighting_topic, sighting, network_time(), intel_id, context);
		}
	}

event zeek_done()
	{
	if ( current_p2p_topic != "" && |buses| > 0 )
		Cluster::publish(management_topic, unsubscribe, current_p2p_topic);
	}

@endif
