#!/bin/sh
# The SP agent's command sealer for an SP that runs Boost (docs/sp-agent.md, "Sealers"):
#
#   estuary sp run --sealer command --seal-command \
#     'sh docs/sealers/boost-contract-deal.sh {kind} {piece_cid} {start_epoch} {end_epoch}'
#
# Boost takes a DealClient proposal itself: its contract-deal monitor
# (boost storagemarket/contract_deal_monitor.go, v2.5) reads the proposal when the contract emits
# DealProposalCreate ([ContractDeals] Enabled, From set, and the contract in AllowlistContracts as
# lowercase hex, or that list empty), makes an online deal with a UUID of its own, downloads
# location_ref and publishes. There is nothing to import (`boostd import-data` refuses deals that
# are not offline). This asks Boost's GraphQL API for its contract deal of this piece with these
# epochs (Boost does not keep the contract's proposal id; DealClient refuses a second live
# proposal with the same terms to the same provider) and prints the chain deal ID once it is
# published; until then it exits 75 (EX_TEMPFAIL): the agent runs a command that failed again
# later. A deal Boost gave up for good exits 1 (the agent gives the hand-over up at its deadline).
#
# Needs curl and jq. BOOST_GQL: the GraphQL endpoint (default http://127.0.0.1:8080/graphql/query).
set -eu
kind=$1 piece=$2 start=$3 end=$4
gql=${BOOST_GQL:-http://127.0.0.1:8080/graphql/query}
if [ "$kind" != proposal ]; then
  echo "Boost publishes DealClient proposals only, not PerpetualStorage slots" >&2
  exit 1
fi
query='query($q: String) { deals(query: $q, limit: 100) { deals { ID ClientPeerID StartEpoch EndEpoch ChainDealID Checkpoint Err Retry } } }'
body=$(jq -nc --arg query "$query" --arg q "$piece" '{query: $query, variables: {q: $q}}')
answer=$(curl -fsS --connect-timeout 5 --max-time 30 -H 'Content-Type: application/json' \
  --data "$body" "$gql")
# GraphQL reports errors with status 200: say Boost's own words.
errors=$(printf '%s' "$answer" | jq -r '(.errors // []) | map(.message) | join("; ")')
if [ -n "$errors" ]; then
  echo "Boost's GraphQL API: $errors" >&2
  exit 75
fi
# Boost's own contract deals only: its contract-deal monitor has no client peer (anyone may
# make a libp2p deal of the same piece and epochs, which is not this proposal's). Boost's
# Uint64 values come as {"__typename": "BigInt", "n": "123"}; plain numbers are read too.
deal=$(printf '%s' "$answer" | jq -c --arg s "$start" --arg e "$end" '
  def n: if type == "object" then .n else tostring end;
  [(.data.deals.deals // [])[] | select(. != null and .ClientPeerID == ""
     and (.StartEpoch | n) == $s and (.EndEpoch | n) == $e)]
  | (map(select(.ChainDealID | n | test("^[1-9][0-9]*$"))) + .) | first // empty')
if [ -z "$deal" ]; then
  echo "no Boost contract deal yet for $piece ($start to $end)" >&2
  exit 75
fi
field() { printf '%s' "$deal" | jq -r "def n: if type == \"object\" then .n else tostring end; $1"; }
uuid=$(field .ID)
id=$(field '.ChainDealID | n')
case $id in
  [1-9]*)
    echo "Boost deal $uuid published as deal $id"
    exit 0
    ;;
esac
if [ "$(field .Retry)" = fatal ]; then
  echo "Boost deal $uuid failed: $(field .Err)" >&2
  exit 1
fi
echo "Boost deal $uuid at $(field .Checkpoint)" >&2
exit 75
