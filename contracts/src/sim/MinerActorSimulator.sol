// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Cbor} from "../lib/Cbor.sol";
import {FilAddress} from "../lib/FilAddress.sol";
import {MarketActor} from "../lib/MarketActor.sol";
import {MinerActor} from "../lib/MinerActor.sol";
import {ISimActor, ISimRegistry, SimActors} from "./SimActors.sol";

/// @notice What a miner simulator needs of the simulated market.
interface ISimMarket {
    function onMinerSectorsTerminate(uint64[] calldata sectors) external;
    function dealPiece(uint64 dealId) external view returns (bool exists, bytes memory pieceCid, uint64 size);
}

/// @title MinerActorSimulator
/// @notice A stand-in for a Filecoin storage miner actor on a local chain (builtin-actors v18
///         `actors/miner/src/lib.rs`), installed at the miner's masked ID address `0xff…<id>`
///         (so its balance is the miner's balance and its messages come from where the real
///         miner's do) and registered with `MarketSimulator.registerMiner`.
///
///         As the FVM does, it refuses an EVM CALL (the EVM actor sends method InvokeEVM, which
///         a miner does not have: exit code 22, so the call fails and no value moves), takes
///         value sent with method 0 through `call_actor_id`, and answers its exported methods
///         with their real numbers and CBOR: IsControllingAddressExported, GetOwnerExported,
///         WithdrawBalanceExported, GetAvailableBalanceExported.
///
///         The storage provider's own messages are plain functions, callable by the miner's
///         owner, worker or control addresses (EVM accounts on the local chain):
///         `proveCommitSectors3` (sector activation with piece notifications, as
///         ProveCommitSectors3 sends SectorContentChanged), `activateDeals` (the same for market
///         deals only), `terminateSectors`, `changeControlAddresses` and `withdrawBalance`.
/// @dev Never deployed on a real network; no constructor (runtime code is copied to each miner's
///      address). Worker and control changes take effect at once (the real worker change waits
///      `worker_key_change_delay`), and no proofs, power or pledge are simulated.
contract MinerActorSimulator is ISimActor {
    /// @notice A notification a piece asks for when its sector is proven
    ///         (`DataActivationNotification`).
    struct Notification {
        /// The actor to notify, as a binary Filecoin address (`0x0005` for the market).
        bytes addr;
        /// Receiver-specific data: for the market, the CBOR deal ID.
        bytes payload;
    }

    /// @notice A piece of a sector (`PieceActivationManifest`, without verified allocations).
    struct PieceActivation {
        bytes pieceCid;
        uint64 size;
        Notification[] notify;
    }

    /// @notice A sector being proven (`SectorActivationManifest`) and its expiration.
    struct SectorActivation {
        uint64 sector;
        int64 expiration;
        PieceActivation[] pieces;
    }

    /// @notice The miner's owner (receives withdrawals).
    address public owner;
    /// @notice The miner's worker.
    address public worker;
    address[] internal controls;
    bool internal initialized;

    /// @notice The owner, worker and control addresses were set.
    event ControlAddressesChanged(address owner, address worker, address[] controls);
    /// @notice Sectors were proven; their pieces' notifications were sent.
    event SectorsActivated(uint64[] sectors);
    /// @notice Sectors were terminated.
    event SectorsTerminated(uint64[] sectors);
    /// @notice The owner withdrew from the miner's balance.
    event BalanceWithdrawn(address indexed to, uint256 amount);

    /// @notice Only the simulated market registers a miner, once.
    error MinerActorSimulatorNotMarket(address caller);
    /// @notice The miner was registered already.
    error MinerActorSimulatorInitialized();
    /// @notice The caller is not the owner, worker or a control address.
    error MinerActorSimulatorNotControlling(address caller);
    /// @notice The caller is not the owner.
    error MinerActorSimulatorNotOwner(address caller);
    /// @notice A notified actor failed or did not accept every piece, and the caller required it
    ///         (`ERR_NOTIFICATION_RECEIVER_ABORTED` 1002 / `ERR_NOTIFICATION_REJECTED` 1004).
    error MinerActorSimulatorNotificationRejected(bytes notifee, int256 exitCode);

    // ================================================================== the actor's methods

    /// @notice Answers a message to the miner: method 0 (a send) credits the value and runs
    ///         nothing else; exported methods as the real miner does; methods 1024 to 2^24 - 1
    ///         are forbidden to non-built-in callers (18), anything else is unhandled (22).
    /// @inheritdoc ISimActor
    function handle(uint64 method, uint64, bytes calldata params)
        external
        payable
        returns (int256 exitCode, uint64 codec, bytes memory ret)
    {
        if (method == 0) return (0, 0, "");
        if (method == MinerActor.IS_CONTROLLING_ADDRESS) {
            (bytes memory addr,) = Cbor.readBytes(params, 0);
            (bool ok, address a) = FilAddress.toEvm(addr);
            return (0, MarketActor.CODEC_CBOR, Cbor.encodeBool(ok && isControlling(resolve(a))));
        }
        if (method == MinerActor.GET_OWNER) {
            return (
                0,
                MarketActor.CODEC_CBOR,
                bytes.concat(
                    Cbor.encodeArray(2), Cbor.encodeBytes(FilAddress.fromEvm(owner)), Cbor.encodeNull()
                )
            );
        }
        if (method == MinerActor.GET_AVAILABLE_BALANCE) {
            return (0, MarketActor.CODEC_CBOR, Cbor.encodeBigUint(address(this).balance));
        }
        if (method == MinerActor.WITHDRAW_BALANCE) {
            if (msg.sender != owner) return (18, 0, "");
            bytes memory p = params;
            (uint64 n, uint256 i) = Cbor.readArray(p, 0);
            if (n != 1) return (21, 0, "");
            (uint256 amount,) = Cbor.readBigUint(p, i);
            return (0, MarketActor.CODEC_CBOR, Cbor.encodeBigUint(withdrawTo(amount)));
        }
        if (method >= 1024 && method < 1 << 24) return (18, 0, "");
        return (22, 0, "");
    }

    /// @notice Whether `account` is the owner, the worker or a control address.
    function isControlling(address account) public view returns (bool) {
        if (account == address(0)) return false;
        if (account == owner || account == worker) return true;
        for (uint256 k; k < controls.length; ++k) {
            if (controls[k] == account) return true;
        }
        return false;
    }

    /// @notice The control addresses (besides owner and worker).
    function controlAddresses() external view returns (address[] memory) {
        return controls;
    }

    /// @dev An `f0` address of an EVM actor resolves to its EVM address.
    function resolve(address a) private view returns (address) {
        (bool isMasked, uint64 id) = FilAddress.idOfMasked(a);
        if (!isMasked) return a;
        address evm = ISimRegistry(SimActors.MARKET).actorAddress(id);
        return evm == address(0) ? a : evm;
    }

    // ================================================================== set-up

    /// @notice Called by `MarketSimulator.registerMiner`, once.
    function initialize(address owner_, address worker_, address[] calldata controls_) external {
        if (msg.sender != SimActors.MARKET) revert MinerActorSimulatorNotMarket(msg.sender);
        if (initialized) revert MinerActorSimulatorInitialized();
        initialized = true;
        owner = owner_;
        worker = worker_;
        controls = controls_;
        emit ControlAddressesChanged(owner_, worker_, controls_);
    }

    // ================================================================== the provider's messages

    modifier onlyControlling() {
        if (!isControlling(msg.sender)) revert MinerActorSimulatorNotControlling(msg.sender);
        _;
    }

    /// @notice Stands for ChangeWorkerAddress (effective at once here): new worker and control
    ///         addresses. Owner only.
    function changeControlAddresses(address worker_, address[] calldata controls_) external {
        if (msg.sender != owner) revert MinerActorSimulatorNotOwner(msg.sender);
        worker = worker_;
        controls = controls_;
        emit ControlAddressesChanged(owner, worker_, controls_);
    }

    /// @notice Stands for ProveCommitSectors3: the sectors are proven and each piece's
    ///         notifications are sent, one SectorContentChanged message per notified actor with
    ///         all its sectors and pieces (`notify_data_consumers`).
    /// @param requireNotificationSuccess Revert if a notified actor fails or rejects a piece.
    /// @return accepted Per notified actor in order of first appearance, per sector and piece
    ///         sent to it: whether it accepted.
    function proveCommitSectors3(SectorActivation[] calldata sectors, bool requireNotificationSuccess)
        external
        onlyControlling
        returns (bool[] memory accepted)
    {
        bytes[] memory notifees = new bytes[](countNotifications(sectors));
        uint256 distinct;
        for (uint256 s; s < sectors.length; ++s) {
            for (uint256 p; p < sectors[s].pieces.length; ++p) {
                Notification[] calldata ns = sectors[s].pieces[p].notify;
                for (uint256 n; n < ns.length; ++n) {
                    bool seen;
                    for (uint256 k; k < distinct && !seen; ++k) {
                        seen = keccak256(notifees[k]) == keccak256(ns[n].addr);
                    }
                    if (!seen) notifees[distinct++] = ns[n].addr;
                }
            }
        }
        uint64[] memory numbers = new uint64[](sectors.length);
        for (uint256 s; s < sectors.length; ++s) {
            numbers[s] = sectors[s].sector;
        }
        emit SectorsActivated(numbers);
        uint256 total;
        bool[][] memory results = new bool[][](distinct);
        for (uint256 k; k < distinct; ++k) {
            results[k] = notify(notifees[k], sectors, requireNotificationSuccess);
            total += results[k].length;
        }
        accepted = new bool[](total);
        uint256 o;
        for (uint256 k; k < distinct; ++k) {
            for (uint256 j; j < results[k].length; ++j) {
                accepted[o++] = results[k][j];
            }
        }
    }

    function countNotifications(SectorActivation[] calldata sectors) private pure returns (uint256 n) {
        for (uint256 s; s < sectors.length; ++s) {
            for (uint256 p; p < sectors[s].pieces.length; ++p) {
                n += sectors[s].pieces[p].notify.length;
            }
        }
    }

    /// @dev One SectorContentChanged to `notifee`: `[[sector, expiration, [[cid, size, payload]]]]`
    ///      over the sectors with a piece naming it; the answer is `[[accepted]]` in the same shape.
    function notify(bytes memory notifee, SectorActivation[] calldata sectors, bool requireSuccess)
        private
        returns (bool[] memory accepted)
    {
        bytes memory params;
        uint256 sectorCount;
        uint256 pieceCount;
        for (uint256 s; s < sectors.length; ++s) {
            bytes memory pieces;
            uint256 n;
            for (uint256 p; p < sectors[s].pieces.length; ++p) {
                PieceActivation calldata piece = sectors[s].pieces[p];
                for (uint256 k; k < piece.notify.length; ++k) {
                    if (keccak256(piece.notify[k].addr) != keccak256(notifee)) continue;
                    pieces = bytes.concat(
                        pieces,
                        Cbor.encodeArray(3),
                        Cbor.encodeCid(piece.pieceCid),
                        Cbor.encodeUint(piece.size),
                        Cbor.encodeBytes(piece.notify[k].payload)
                    );
                    ++n;
                }
            }
            if (n == 0) continue;
            params = bytes.concat(
                params,
                Cbor.encodeArray(3),
                Cbor.encodeUint(sectors[s].sector),
                Cbor.encodeInt(sectors[s].expiration),
                Cbor.encodeArray(uint64(n)),
                pieces
            );
            ++sectorCount;
            pieceCount += n;
        }
        params = bytes.concat(Cbor.encodeArray(uint64(sectorCount)), params);
        (int256 code, uint64 codec, bytes memory ret) = send(notifee, params);
        accepted = new bool[](pieceCount);
        if (code != 0 || codec != MarketActor.CODEC_CBOR) {
            if (requireSuccess) {
                revert MinerActorSimulatorNotificationRejected(notifee, code == 0 ? int256(1003) : code);
            }
            return accepted;
        }
        bool all = readAccepted(ret, accepted, sectorCount);
        if (requireSuccess && !all) revert MinerActorSimulatorNotificationRejected(notifee, 1004);
    }

    function send(bytes memory notifee, bytes memory params)
        private
        returns (int256 code, uint64 codec, bytes memory ret)
    {
        (bool isId, uint64 id) = FilAddress.parseIdAddress(notifee);
        if (isId) return SimActors.send(id, MarketActor.SECTOR_CONTENT_CHANGED, params, 0, false);
        (bool ok, address a) = FilAddress.parseDelegated(notifee);
        if (!ok) return (SimActors.SYS_NOT_FOUND, 0, "");
        return SimActors.invokeEvm(a, MarketActor.SECTOR_CONTENT_CHANGED, params, 0, false);
    }

    /// @dev Reads `[[bool]]` into `out`; false if the shape is not the one sent or a piece was
    ///      rejected.
    function readAccepted(bytes memory ret, bool[] memory out, uint256 sectorCount)
        private
        pure
        returns (bool all)
    {
        (uint64 n, uint256 i) = Cbor.readArray(ret, 0);
        if (n != sectorCount) return false;
        all = true;
        uint256 o;
        for (uint256 s; s < n; ++s) {
            uint64 pieces;
            (pieces, i) = Cbor.readArray(ret, i);
            for (uint256 p; p < pieces; ++p) {
                bool ok;
                (ok, i) = Cbor.readBool(ret, i);
                if (o >= out.length) return false;
                out[o++] = ok;
                all = all && ok;
            }
        }
        return all && o == out.length;
    }

    /// @notice The market-deal case of `proveCommitSectors3`: proves `sector` (expiring at
    ///         `expiration`) holding market deals `dealIds`, notifying the market of each with
    ///         its CBOR deal ID. Deals the market does not have are skipped.
    /// @return accepted Per deal: whether the market activated it.
    function activateDeals(uint64 sector, int64 expiration, uint64[] calldata dealIds)
        external
        onlyControlling
        returns (bool[] memory accepted)
    {
        accepted = new bool[](dealIds.length);
        bytes memory pieces;
        uint256 n;
        uint256[] memory index = new uint256[](dealIds.length);
        for (uint256 k; k < dealIds.length; ++k) {
            (bool exists, bytes memory cid, uint64 size) = ISimMarket(SimActors.MARKET).dealPiece(dealIds[k]);
            if (!exists) continue;
            pieces = bytes.concat(
                pieces,
                Cbor.encodeArray(3),
                Cbor.encodeCid(cid),
                Cbor.encodeUint(size),
                Cbor.encodeBytes(Cbor.encodeUint(dealIds[k]))
            );
            index[n++] = k;
        }
        uint64[] memory numbers = new uint64[](1);
        numbers[0] = sector;
        emit SectorsActivated(numbers);
        if (n == 0) return accepted;
        bytes memory params = bytes.concat(
            Cbor.encodeArray(1),
            Cbor.encodeArray(3),
            Cbor.encodeUint(sector),
            Cbor.encodeInt(expiration),
            Cbor.encodeArray(uint64(n)),
            pieces
        );
        (int256 code,, bytes memory ret) =
            SimActors.invokeBuiltin(SimActors.MARKET, MarketActor.SECTOR_CONTENT_CHANGED, params, 0, false);
        if (code != 0) return accepted;
        bool[] memory got = new bool[](n);
        readAccepted(ret, got, 1);
        for (uint256 k; k < n; ++k) {
            accepted[index[k]] = got[k];
        }
    }

    /// @notice Stands for TerminateSectors: the market removes the sectors' deals that have not
    ///         ended (OnMinerSectorsTerminate).
    function terminateSectors(uint64[] calldata sectors) external onlyControlling {
        ISimMarket(SimActors.MARKET).onMinerSectorsTerminate(sectors);
        emit SectorsTerminated(sectors);
    }

    /// @notice Stands for WithdrawBalance from the owner: sends up to `amount` of the miner's
    ///         balance to the owner.
    function withdrawBalance(uint256 amount) external returns (uint256 withdrawn) {
        if (msg.sender != owner) revert MinerActorSimulatorNotOwner(msg.sender);
        return withdrawTo(amount);
    }

    function withdrawTo(uint256 amount) private returns (uint256) {
        if (amount > address(this).balance) amount = address(this).balance;
        emit BalanceWithdrawn(owner, amount);
        SimActors.pay(owner, amount);
        return amount;
    }

    /// @notice An EVM CALL to a miner runs its InvokeEVM method, which it does not have: exit
    ///         code 22, the call fails and no value moves.
    receive() external payable {
        revert();
    }

    /// @notice See `receive`.
    fallback() external payable {
        revert();
    }
}
