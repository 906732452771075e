// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EstuaryPinning} from "../../src/EstuaryPinning.sol";
import {PoDSI} from "../../src/lib/PoDSI.sol";
import {FilecoinTest} from "./FilecoinTest.sol";
import {PoDSIFixture} from "./PoDSIFixture.sol";

/// What a deal report is made of: `EstuaryPinning` requests reported pinned with the fixture's
/// pieces (made by `crates/piece`), and each one's inclusion proof in its aggregate.
abstract contract PinnedPieces is FilecoinTest, PoDSIFixture {
    EstuaryPinning internal pinning;
    address internal constant OWNER = address(0x0A);
    address internal constant ORACLE = address(0x0C);
    address internal constant ALICE = address(0xA11CE);
    bytes internal constant CID =
        hex"01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace";
    bytes32 internal constant H = keccak256(CID);

    /// The fixture's "estuary payloads" aggregate: five real pieces in 8 MiB.
    uint256 internal payloads;

    /// `pinning` (owned by `OWNER`, `ORACLE` its operator) and the fixture.
    function setUpPinning() internal {
        pinning = new EstuaryPinning(OWNER, 1 days);
        vm.prank(OWNER);
        pinning.setOperator(ORACLE, true);
        loadFixture();
        payloads = firstOf("e");
    }

    /// One request per piece `cases[first + k]`, reported pinned with that piece.
    function pinned(uint256 first, uint256 n) internal returns (uint256[] memory ids) {
        ids = new uint256[](n);
        for (uint256 k; k < n; ++k) {
            vm.prank(ALICE);
            ids[k] = pinning.pinToEstuary(CID);
            Case storage c = cases[first + k];
            vm.prank(ORACLE);
            pinning.reportPinned(ids[k], H, PoDSI.pieceCidOf(c.commPc), c.sizePc);
        }
    }

    /// The inclusions of requests `ids` in their aggregate, request k holding `cases[first + k]`.
    function inclusions(uint256 first, uint256[] memory ids)
        internal
        view
        returns (EstuaryPinning.PinInclusion[] memory pins)
    {
        pins = new EstuaryPinning.PinInclusion[](ids.length);
        for (uint256 k; k < ids.length; ++k) {
            Case storage c = cases[first + k];
            pins[k] = EstuaryPinning.PinInclusion(ids[k], H, c.commPc, c.sizePc, proofOf(c));
        }
    }
}
