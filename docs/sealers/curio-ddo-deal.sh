#!/bin/sh
# The SP agent's command sealer for an SP that runs Curio (docs/sp-agent.md, "Sealers"):
#
#   estuary sp run … --sealer command --seal-command 'sh docs/sealers/curio-ddo-deal.sh'
#
# It hands a DealClient proposal to Curio's mk20 market as a DDO deal (curio
# market/mk20/ddo_v1.go, at e0294b0): no market deal is published; Curio downloads the piece from
# this agent (source_http: the agent's own /piece URL, which serves the bytes it verified), checks
# its piece CID, and seals it with an activation notification to the DealClient whose payload is
# the proposal id (ddo_v1.notification_address/notification_payload, set on the piece's
# activation manifest; the miner actor delivers it). DealClient then records the deal with
# NO_DEAL, which the agent reads as its activation.
#
# Before it accepts the deal, Curio asks the contract: version() must be 1, then
# verifyDeal(CurioDealView) with market_deal_id (the proposal's number) must be true. The
# contract must be allowed in Curio's ddo_contracts table.
#
# The deal is named by a ULID derived from the proposal id, so a second run finds it
# (GET /status) instead of submitting it again; Curio answers 401 for a deal id it does not
# hold for this client (market/mk20/http/http.go AuthMiddleware, AuthenticateClient), and
# then the deal is submitted. It prints "… direct" once Curio has the deal; a refusal or a
# failed deal exits 1 and anything that may pass later 75; the agent runs a command that
# failed again later, until the proposal's start epoch.
#
# Everything it needs is in ESTUARY_* variables the agent sets, including the two
# Authorization headers (CurioAuth, signed by the agent's key as its f4 address: Curio's
# client, which Curio must allow: market_mk20_clients, or DenyUnknownClients off). Curio takes
# a header in the minute it was signed and the one before and after, so the requests are made
# at once; the headers go to curl in a file only this user can read, not on its command line.
# Needs curl and jq. CURIO_MARKET_URL: Curio's HTTP server ([HTTP] ListenAddress; default
# http://127.0.0.1:12310).
set -eu
if [ "$ESTUARY_KIND" != proposal ]; then
  echo "Curio's DDO deals take DealClient proposals only (a PerpetualStorage slot needs a market deal)" >&2
  exit 1
fi
if [ "${ESTUARY_ACCEPT_DIRECT:-true}" = false ]; then
  echo "the DealClient takes no direct deals (its DealPolicy.acceptDirect is off): Curio's verifyDeal would refuse this one" >&2
  exit 1
fi
id=$ESTUARY_CURIO_ID
api=${CURIO_MARKET_URL:-http://127.0.0.1:12310}/market/mk20
answer=$(mktemp)
headers=$(mktemp)
trap 'rm -f "$answer" "$headers"' EXIT
call() { # METHOD PATH AUTH [BODY]: prints the HTTP status; the body goes to $answer
  printf 'Authorization: %s\n' "$3" > "$headers"
  if [ $# -gt 3 ]; then
    printf '%s' "$4" | curl -sS --connect-timeout 5 --max-time 30 -o "$answer" \
      -w '%{http_code}' -X "$1" -H @"$headers" -H 'Content-Type: application/json' \
      --data-binary @- "$api$2"
  else
    curl -sS --connect-timeout 5 --max-time 30 -o "$answer" -w '%{http_code}' -X "$1" \
      -H @"$headers" "$api$2"
  fi
}
said() { head -c 300 "$answer" | tr '\n' ' '; }

code=$(call GET "/status/$id" "$ESTUARY_CURIO_AUTH_STATUS") || {
  echo "Curio's market API at $api did not answer" >&2
  exit 75
}
# 401: no deal of this id for this client (or a header Curio refused: the submission says).
if [ "$code" = 401 ] || [ "$code" = 404 ]; then
  deal=$(jq -nc \
    --arg id "$id" --arg client "$ESTUARY_CLIENT_ADDRESS" --arg piece "$ESTUARY_PIECE_CID_V2" \
    --arg url "$ESTUARY_PIECE_URL" --arg provider "$ESTUARY_MINER" \
    --argjson first "$ESTUARY_START_EPOCH" --argjson last "$ESTUARY_END_EPOCH" \
    --arg market "$ESTUARY_CONTRACT" --argjson number "$ESTUARY_DEAL_NUMBER" \
    --arg notify "$ESTUARY_CONTRACT_ADDRESS" --arg payload "$ESTUARY_PROPOSAL_ID_BASE64" '{
      identifier: $id,
      client: $client,
      data: {
        piece_cid: {"/": $piece},
        format: {car: {}},
        source_http: {urls: [{url: $url, headers: {}, priority: 0, fallback: true}]}
      },
      products: {
        ddo_v1: {
          provider: $provider, start_epoch: $first, duration: ($last - $first),
          market_address: $market, market_deal_id: $number,
          notification_address: $notify, notification_payload: $payload
        },
        retrieval_v1: {indexing: true, announce_payload: true, announce_piece: false}
      }
    }')
  code=$(call POST /deal "$ESTUARY_CURIO_AUTH_DEAL" "$deal") || {
    echo "Curio's market API at $api did not answer" >&2
    exit 75
  }
  case $code in
    200)
      echo "Curio accepted deal $id for proposal $ESTUARY_PROPOSAL_ID: direct"
      exit 0
      ;;
    429 | 5*)
      # 500 with no reason is also how Curio answers a deal id it already has.
      echo "Curio is busy or failed ($code): $(said)" >&2
      exit 75
      ;;
    *)
      # 426: the contract's verifyDeal said no; 4xx: the deal or its client was refused.
      echo "Curio refused deal $id ($code): $(said)" >&2
      exit 1
      ;;
  esac
fi
if [ "$code" != 200 ]; then
  echo "Curio's status of deal $id: HTTP $code $(said)" >&2
  exit 75
fi
state=$(jq -r '.ddo_v1.status // empty' "$answer")
case $state in
  failed)
    echo "Curio deal $id failed: $(jq -r '.ddo_v1.errorMsg // ""' "$answer")" >&2
    exit 1
    ;;
  "")
    echo "Curio's status of deal $id names no DDO deal: $(said)" >&2
    exit 75
    ;;
esac
echo "Curio deal $id for proposal $ESTUARY_PROPOSAL_ID is $state: direct"
