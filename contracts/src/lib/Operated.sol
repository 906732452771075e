// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

/// @title Operated
/// @notice Two-step ownership and a set of operators the owner manages: the accounts (Estuary's
///         oracles) allowed to act for the contract.
abstract contract Operated is Ownable2Step {
    /// @notice Accounts allowed to act as operators.
    mapping(address account => bool) public isOperator;

    /// @notice The owner added or removed an operator.
    event OperatorSet(address indexed account, bool allowed);

    /// @notice The caller is not an operator.
    error NotOperator(address caller);

    constructor(address owner_) Ownable(owner_) {}

    modifier onlyOperator() {
        if (!isOperator[msg.sender]) revert NotOperator(msg.sender);
        _;
    }

    /// @notice Adds or removes an operator.
    function setOperator(address account, bool allowed) external onlyOwner {
        isOperator[account] = allowed;
        emit OperatorSet(account, allowed);
    }
}
