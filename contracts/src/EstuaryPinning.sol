// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {CidLib} from "./lib/CidLib.sol";

/// @title EstuaryPinning
/// @notice Records requests to pin IPFS content with Estuary. Anyone may call `pinToEstuary`;
///         Estuary's oracles follow `PinRequested`, fetch and pin the content, and keep it on
///         Filecoin.
/// @dev Only the CID's structure is checked on chain (see `CidLib`); whether the content exists is
///      for the oracle to find out.
contract EstuaryPinning {
    /// @notice Number of requests made so far; request ids run from 1 to `requestCount`.
    uint256 public requestCount;

    /// @notice Who made each request.
    mapping(uint256 requestId => address requester) public requesterOf;

    /// @notice A pin was requested.
    /// @param requestId The new request's id, increasing from 1.
    /// @param requester The caller of `pinToEstuary`.
    /// @param cid The binary CID to pin.
    event PinRequested(uint256 indexed requestId, address indexed requester, bytes cid);

    /// @notice The bytes given are not a binary CIDv0 or CIDv1.
    /// @param reason What is wrong with them.
    error EstuaryPinningInvalidCid(CidLib.CidError reason);

    /// @notice Asks Estuary to pin `cid`.
    /// @param cid A binary CIDv0 or CIDv1 (not its string form).
    /// @return requestId The id of the new request.
    function pinToEstuary(bytes calldata cid) external returns (uint256 requestId) {
        CidLib.CidError err = CidLib.check(cid);
        if (err != CidLib.CidError.None) revert EstuaryPinningInvalidCid(err);
        requestId = ++requestCount;
        requesterOf[requestId] = msg.sender;
        emit PinRequested(requestId, msg.sender, cid);
    }
}
